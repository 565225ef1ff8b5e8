/* token: see fuzz/lua/token.lua for what is fed in and what is checked. */
#include "harness.h"

SG_FUZZ_LUA_TARGET("token")
