// Scratch a backend reuses across the calls of one sequence; opaque above the backend that made it.
#pragma once

namespace dynamoe {

class Workspace {
 public:
  virtual ~Workspace() = default;
};

}  // namespace dynamoe
