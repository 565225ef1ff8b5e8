/* jwt: see fuzz/lua/jwt.lua for what is fed in and what is checked. */
#include "harness.h"

SG_FUZZ_LUA_TARGET("jwt")
