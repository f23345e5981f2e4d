// safetensors reading and writing, and the bridge between a Module's named state and the file.
#include "models/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace hdssl::models {
namespace {
using json = nlohmann::json;

size_t dtype_bytes(const std::string& d) {
  if (d == "F32" || d == "I32") return 4;
  if (d == "F64" || d == "I64") return 8;
  return 0;
}
std::string st_dtype(DType t) { return t == DType::F32 ? "F32" : t == DType::F64 ? "F64" : "I32"; }

uint32_t crc_of(const std::vector<StoredTensor>& ts) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const auto& t : ts) crc = crc32(crc, reinterpret_cast<const Bytef*>(t.bytes.data()), uInt(t.bytes.size()));
  return uint32_t(crc);
}

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw CheckpointError("checkpoint " + path + ": " + why);
}

void write_all(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(path, std::string("write failed: ") + std::strerror(errno));
    }
    p += w;
    n -= size_t(w);
  }
}

std::string dir_of(const std::string& path) {
  auto s = path.find_last_of('/');
  return s == std::string::npos ? "." : (s == 0 ? "/" : path.substr(0, s));
}
}  // namespace

const StoredTensor* SafeTensors::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

void SafeTensors::add(const std::string& name, const Tensor& t) {
  Tensor h = t.to(Device::cpu());
  if (!h.is_contiguous()) h = h.clone();
  StoredTensor s{name, st_dtype(h.dtype()), h.shape(), std::vector<char>(h.nbytes())};
  if (h.nbytes()) std::memcpy(s.bytes.data(), h.raw(), h.nbytes());
  tensors.push_back(std::move(s));
}

void write_safetensors(const std::string& path, const SafeTensors& st) {
  json header = json::object();
  size_t offset = 0;
  for (const auto& t : st.tensors) {
    HDSSL_CHECK(dtype_bytes(t.dtype) && size_t(numel(t.shape)) * dtype_bytes(t.dtype) == t.bytes.size())
        << "tensor " << t.name << " has " << t.bytes.size() << " bytes for " << t.dtype << shape_str(t.shape);
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  json meta = json::object();
  for (const auto& [k, v] : st.metadata) meta[k] = v;
  meta["hdssl.crc32"] = std::to_string(crc_of(st.tensors));
  header["__metadata__"] = meta;
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // align the data to 8 bytes, as the reference writer does
  uint64_t n = h.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = char((n >> (8 * i)) & 0xff);

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail(path, "cannot create " + tmp + ": " + std::strerror(errno));
  try {
    write_all(fd, len, 8, path);
    write_all(fd, h.data(), h.size(), path);
    for (const auto& t : st.tensors) write_all(fd, t.bytes.data(), t.bytes.size(), path);
    if (::fsync(fd) != 0) fail(path, std::string("fsync failed: ") + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    fail(path, std::string("rename failed: ") + std::strerror(errno));
  }
  int dfd = ::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY);  // make the rename itself durable
  if (dfd >= 0) { ::fsync(dfd); ::close(dfd); }
}

SafeTensors read_safetensors(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) fail(path, "cannot open");
  const uint64_t size = uint64_t(f.tellg());
  f.seekg(0);
  if (size < 8) fail(path, "truncated: " + std::to_string(size) + " bytes, not even a header length");
  unsigned char len[8];
  f.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(len[i]) << (8 * i);
  if (n > size - 8) fail(path, "truncated: header of " + std::to_string(n) + " bytes, file of " + std::to_string(size));
  std::string h(n, '\0');
  f.read(h.data(), std::streamsize(n));
  json header;
  try {
    header = json::parse(h);
  } catch (const std::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");
  const uint64_t data_size = size - 8 - n;
  SafeTensors st;
  struct Entry { std::string name, dtype; Shape shape; uint64_t begin, end; };
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail(path, "__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail(path, "metadata " + m.key() + " is not a string");
        st.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const json& e = *it;
    try {
      Entry en{it.key(), e.at("dtype").get<std::string>(), e.at("shape").get<Shape>(),
               e.at("data_offsets").at(0).get<uint64_t>(), e.at("data_offsets").at(1).get<uint64_t>()};
      if (!dtype_bytes(en.dtype)) fail(path, "tensor " + en.name + " has unsupported dtype " + en.dtype);
      // The byte count, computed without overflow (a crafted shape could wrap it to the stored size, and
      // numel() would overflow later): the product of the non-zero dimensions must stay below 2^40.
      uint64_t elements = 1;
      bool empty = false;
      for (int64_t d : en.shape) {
        if (d < 0) fail(path, "tensor " + en.name + " has a negative dimension");
        if (d == 0) {
          empty = true;
          continue;
        }
        if (__builtin_mul_overflow(elements, uint64_t(d), &elements) || elements > (uint64_t(1) << 40))
          fail(path, "tensor " + en.name + " has an impossible shape " + shape_str(en.shape));
      }
      const uint64_t nbytes = empty ? 0 : elements * dtype_bytes(en.dtype);
      if (en.end < en.begin || en.end > data_size)
        fail(path, "tensor " + en.name + " lies outside the data (truncated file?): bytes " + std::to_string(en.begin) +
                       ".." + std::to_string(en.end) + " of " + std::to_string(data_size));
      if (en.end - en.begin != nbytes)
        fail(path, "tensor " + en.name + " has " + std::to_string(en.end - en.begin) + " bytes for " + en.dtype +
                       shape_str(en.shape));
      entries.push_back(std::move(en));
    } catch (const nlohmann::json::exception& ex) {
      fail(path, "malformed entry for " + it.key() + ": " + ex.what());
    }
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  std::vector<char> data(data_size);
  f.read(data.data(), std::streamsize(data_size));
  if (uint64_t(f.gcount()) != data_size) fail(path, "short read");
  uint64_t expect = 0;
  for (auto& e : entries) {
    if (e.begin != expect) fail(path, "tensor " + e.name + " overlaps or leaves a gap in the data");
    expect = e.end;
    st.tensors.push_back({e.name, e.dtype, e.shape, std::vector<char>(data.begin() + long(e.begin), data.begin() + long(e.end))});
  }
  if (expect != data_size) fail(path, "trailing bytes after the last tensor (" + std::to_string(data_size - expect) + ")");
  auto crc = st.metadata.find("hdssl.crc32");
  if (crc != st.metadata.end() && crc->second != std::to_string(crc_of(st.tensors)))
    fail(path, "data checksum mismatch (corrupted file): stored " + crc->second + ", computed " +
                   std::to_string(crc_of(st.tensors)));
  return st;
}

Tensor to_tensor(const StoredTensor& s, DType dtype, Device device) {
  const int64_t n = numel(s.shape);
  auto convert = [&](auto* dst) {
    using T = std::remove_pointer_t<decltype(dst)>;
    for (int64_t i = 0; i < n; ++i) {
      const char* p = s.bytes.data() + i * int64_t(dtype_bytes(s.dtype));
      if (s.dtype == "F32") { float v; std::memcpy(&v, p, 4); dst[i] = T(v); }
      else if (s.dtype == "F64") { double v; std::memcpy(&v, p, 8); dst[i] = T(v); }
      else if (s.dtype == "I32") { int32_t v; std::memcpy(&v, p, 4); dst[i] = T(v); }
      else { int64_t v; std::memcpy(&v, p, 8); dst[i] = T(v); }
    }
  };
  Tensor h = Tensor::empty(s.shape, dtype, Device::cpu());
  if (dtype == DType::F32) convert(h.data<float>());
  else if (dtype == DType::F64) convert(h.data<double>());
  else convert(h.data<int32_t>());
  return h.to(device);
}

void add_module_state(SafeTensors& st, const Module& m, const std::string& prefix) {
  for (const auto& [name, v] : m.named_parameters()) st.add(prefix + name, v.value());
  for (const auto& [name, b] : m.named_buffers()) {
    if (b.tensor) { st.add(prefix + name, *b.tensor); continue; }
    StoredTensor s{prefix + name, "I64", {}, std::vector<char>(8)};
    std::memcpy(s.bytes.data(), b.counter, 8);
    st.tensors.push_back(std::move(s));
  }
}

std::string LoadReport::str() const {
  std::ostringstream os;
  for (const auto& n : missing) os << "  missing: " << n << "\n";
  for (const auto& n : unexpected) os << "  unexpected: " << n << "\n";
  for (const auto& n : mismatched) os << "  mismatched: " << n << "\n";
  return os.str();
}

LoadReport load_module_state(Module& m, const SafeTensors& st, const std::string& prefix, bool strict,
                             const std::vector<std::string>& ignore) {
  LoadReport r;
  std::map<std::string, bool> known;
  auto check_shape = [&](const std::string& full, const StoredTensor& s, const Shape& want) {
    if (s.shape == want && s.dtype != "I32" && s.dtype != "I64") return true;
    r.mismatched.push_back(full + ": file " + s.dtype + shape_str(s.shape) + " vs module " + shape_str(want));
    return false;
  };
  for (auto& [name, v] : m.named_parameters()) {
    const std::string full = prefix + name;
    known[full] = true;
    const StoredTensor* s = st.find(full);
    if (!s) { r.missing.push_back(full); continue; }
    if (check_shape(full, *s, v.shape())) v.value() = to_tensor(*s, v.dtype(), v.device());
  }
  for (auto& [name, b] : m.named_buffers()) {
    const std::string full = prefix + name;
    known[full] = true;
    const StoredTensor* s = st.find(full);
    if (!s) { r.missing.push_back(full); continue; }
    if (b.tensor) {
      if (check_shape(full, *s, b.tensor->shape())) *b.tensor = to_tensor(*s, b.tensor->dtype(), b.tensor->device());
    } else if (numel(s->shape) != 1 || (s->dtype != "I64" && s->dtype != "I32")) {
      r.mismatched.push_back(full + ": file " + s->dtype + shape_str(s->shape) + " vs module int64[]");
    } else if (s->dtype == "I64") {
      std::memcpy(b.counter, s->bytes.data(), 8);
    } else {
      int32_t v; std::memcpy(&v, s->bytes.data(), 4); *b.counter = v;
    }
  }
  for (const auto& t : st.tensors) {
    if (t.name.compare(0, prefix.size(), prefix) != 0 || known.count(t.name)) continue;
    bool skip = false;
    for (const auto& ig : ignore) skip = skip || t.name.compare(0, ig.size(), ig) == 0;
    if (!skip) r.unexpected.push_back(t.name);
  }
  if (strict && !r.ok()) throw CheckpointError("checkpoint does not fit the model:\n" + r.str());
  return r;
}

}  // namespace hdssl::models
