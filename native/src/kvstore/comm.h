// The inter-process communication plugin (loom/comm.h), loaded on first use.
#pragma once

#include "loom/comm.h"

namespace loom {

// The plugin's table; throws LOOM_ERR_BACKEND_UNAVAILABLE naming every path
// tried, or saying how to launch when the process was not started by mpirun.
const loom_comm &comm();

}  // namespace loom
