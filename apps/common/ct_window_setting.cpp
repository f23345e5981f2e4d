#include "apps/common/ct_window_setting.h"

#include <exception>

#include "data/preprocess.h"

namespace hdssl::app {

Setting& add_ct_window(SettingsTable& t, std::string& field) {
  return t
      .add("--ct-window", "ct_window", field,
           "CT intensity window: paper [-1350,1000] | program [-175,250] | LO,HI (HU)", Kind::Defines)
      .legacy("paper")
      .check([](const nlohmann::json& v) -> std::string {
        try {
          data::PreprocessConfig().set_ct_window(v.get<std::string>());  // the parser the preprocessing uses
          return "";
        } catch (const std::exception& e) {
          return e.what();
        }
      });
}

}  // namespace hdssl::app
