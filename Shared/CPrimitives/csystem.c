/* Everything lives in include/csystem.h (static inline); SwiftPM needs one source file. */
#include "csystem.h"
