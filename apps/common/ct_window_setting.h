// --ct-window, the CT intensity window of the preprocessing (docs/method.md section 9 (d)), declared once for
// every program that preprocesses CT for training (./pretrain, ./evaluate): the same flag, JSON key, help,
// app::Kind::Defines with the legacy value "paper" (a run saved before the setting existed used the paper's
// window), and the check that the value is "paper", "program" or "LO,HI" (refused by check_ranges(), exit 2).
#pragma once
#include <string>

#include "apps/common/settings.h"

namespace hdssl::app {

Setting& add_ct_window(SettingsTable& t, std::string& field);

}  // namespace hdssl::app
