/* Internal interface shared by the C files of skewguard.core. */
#ifndef SG_H
#define SG_H

#include <stddef.h>
#include <stdint.h>
#include "compat.h"

#define SG_EXPORT __attribute__((visibility("default")))

/* Each part of the core registers its functions and classes into the module
 * table that is on the top of the stack. */
void sg_open_clock(lua_State *L);

/* Clocks (clock.c): float seconds. */
double sg_monotonic(void);
double sg_wall(void);

/* Create a metatable named `tname` whose __index is a table of `methods`;
 * `meta` holds the metamethods (__gc, __tostring, __close...). Leaves nothing
 * on the stack. On 5.4 `__close` should be in `meta` when the type owns a resource. */
void sg_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                 const luaL_Reg *meta);

/* Runtime failure convention: return nil, message, kind. */
int sg_fail(lua_State *L, const char *kind, const char *fmt, ...);

#endif
