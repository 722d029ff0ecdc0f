#include "backend.h"

#include "errors.h"

namespace dynamoe {

StageTimes MoeLayer::profile(const float*, int, const RoutingPolicy&, int) const {
  throw Error(code::kUnsupported, std::string("profiling by stage needs a layer on device 'cuda'; this layer is on '") +
                                      device() + "'");
}

}  // namespace dynamoe
