/* redis_reply: see fuzz/lua/redis_reply.lua for what is fed in and what is checked. */
#include "harness.h"

SG_FUZZ_LUA_TARGET("redis_reply")
