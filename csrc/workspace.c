/* workspace.c: the workspace of each precision (the struct is in internal.h). */
#include "internal.h"

#define WS CAT(bp_workspace, SFX)

#define REAL float
#define SFX f32
#include "workspace.inc.c"
#undef REAL
#undef SFX

#define REAL double
#define SFX f64
#include "workspace.inc.c"
#undef REAL
#undef SFX
