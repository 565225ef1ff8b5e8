/* Redis protocol (RESP2), sans-I/O, on hiredis: commands are formatted and replies
 * parsed by hiredis's own code, while the caller moves the bytes (LuaSocket in
 * scripts, cosockets in nginx). No RESP is written or parsed by hand here.
 *
 *   core.redis_format({"SET", key, value, "PX", "5000"}) -> bytes
 *   r = core.redis_reader(); r:feed(bytes); r:reply() -> value | nothing | nil, msg, kind
 *
 * Reply values: bulk string -> string (binary-safe), integer -> integer, nil -> false,
 * status -> {ok = "OK"}, array -> sequence (nested), an error element inside an array
 * -> {err = "ERR ..."}; an error reply at the top -> nil, "ERR ...", "redis". A broken
 * byte stream -> nil, message, "protocol" from then on. */
#include <string.h>
#include <hiredis/hiredis.h>
#include "sg.h"

#define SG_REDIS_READER_MT "skewguard.redis_reader"

/* The most elements an array reply may announce. hiredis 0.14 allocates the element
 * pointers as soon as it reads the count: without a bound, the 12 bytes
 * "*311111111\r\n" ask for 2.5 GB. The store's replies have a handful of elements. */
#define SG_REDIS_MAX_ELEMENTS 65536

typedef struct {
  redisReader *reader; /* NULL once closed */
  size_t buffered;     /* bytes fed since the last complete reply */
  void *held;          /* a reply being converted; freed by close if the conversion raised */
  /* hiredis's own object functions, with createArray bounded (reader->fn points here) */
  redisReplyObjectFunctions fns;
  void *(*create_array)(const redisReadTask *, int);
  int refused; /* an array count beyond the bound, not memory, stopped the reader */
} sg_redis_reader;

/* hiredis turns a NULL object into a reader error ("Out of memory"): the reader
 * then fails with kind "protocol" from this reply on. */
static void *bounded_array(const redisReadTask *task, int elements) {
  sg_redis_reader *rr = (sg_redis_reader *)task->privdata;
  if (elements < 0 || elements > SG_REDIS_MAX_ELEMENTS) {
    rr->refused = 1;
    return NULL;
  }
  return rr->create_array(task, elements);
}

static int reader_failed(lua_State *L, const sg_redis_reader *rr) {
  if (rr->refused)
    return sg_fail(L, "protocol", "redis reply: an array of more than %d elements", SG_REDIS_MAX_ELEMENTS);
  return sg_fail(L, "protocol", "redis reply: %s", rr->reader->errstr);
}

static sg_redis_reader *check_reader(lua_State *L) {
  return (sg_redis_reader *)luaL_checkudata(L, 1, SG_REDIS_READER_MT);
}

static sg_redis_reader *open_reader(lua_State *L) {
  sg_redis_reader *rr = check_reader(L);
  if (rr->reader == NULL) luaL_error(L, "skewguard.redis_reader: reader is closed");
  return rr;
}

/* core.redis_format(argv) -> the RESP bytes of one command. Every element is a
 * string (numbers are converted) and may hold any byte. */
static int l_redis_format(lua_State *L) {
  int argc, i, len;
  const char **argv;
  size_t *argvlen;
  char *cmd = NULL;
  luaL_checktype(L, 1, LUA_TTABLE);
  argc = (int)sg_rawlen(L, 1);
  luaL_argcheck(L, argc > 0, 1, "at least the command name expected");
  luaL_checkstack(L, argc + 2, "too many command arguments");
  argv = (const char **)lua_newuserdata(L, sizeof(*argv) * (size_t)argc);
  argvlen = (size_t *)lua_newuserdata(L, sizeof(*argvlen) * (size_t)argc);
  for (i = 0; i < argc; i++) {
    lua_rawgeti(L, 1, i + 1);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
      return luaL_argerror(L, 1, lua_pushfstring(L, "argument %d is not a string or number", i + 1));
    /* converts numbers in place; the string stays referenced on the stack */
    argv[i] = lua_tolstring(L, -1, &argvlen[i]);
  }
  len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
  if (len < 0 || cmd == NULL) return luaL_error(L, "skewguard.redis_format: out of memory");
  lua_pushlstring(L, cmd, (size_t)len);
  /* the command may carry an AUTH password */
  sg_wipe(cmd, (size_t)len);
  redisFreeCommand(cmd);
  return 1;
}

static int l_reader_new(lua_State *L) {
  sg_redis_reader *rr = (sg_redis_reader *)sg_newuserdata(L, sizeof *rr);
  rr->reader = NULL;
  rr->buffered = 0;
  rr->held = NULL;
  rr->refused = 0;
  luaL_getmetatable(L, SG_REDIS_READER_MT);
  lua_setmetatable(L, -2);
  rr->reader = redisReaderCreate();
  if (rr->reader == NULL) return luaL_error(L, "skewguard.redis_reader: out of memory");
  rr->fns = *rr->reader->fn;
  rr->create_array = rr->fns.createArray;
  rr->fns.createArray = bounded_array;
  rr->reader->fn = &rr->fns;
  rr->reader->privdata = rr; /* hiredis hands it to every read task */
  return 1;
}

/* r:feed(bytes) -> true | nil, msg, "protocol" (after a protocol error). */
static int l_reader_feed(lua_State *L) {
  sg_redis_reader *rr = open_reader(L);
  size_t n;
  const char *bytes = luaL_checklstring(L, 2, &n);
  if (rr->reader->err) return reader_failed(L, rr);
  if (redisReaderFeed(rr->reader, bytes, n) != REDIS_OK)
    return reader_failed(L, rr);
  rr->buffered += n;
  lua_pushboolean(L, 1);
  return 1;
}

static void push_reply(lua_State *L, const redisReply *reply) {
  size_t i;
  luaL_checkstack(L, 4, "redis reply nested too deeply");
  switch (reply->type) {
  case REDIS_REPLY_STRING:
    lua_pushlstring(L, reply->str, reply->len);
    break;
  case REDIS_REPLY_INTEGER:
    sg_pushint64(L, reply->integer);
    break;
  case REDIS_REPLY_NIL:
    lua_pushboolean(L, 0);
    break;
  case REDIS_REPLY_STATUS:
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, reply->str, reply->len);
    lua_setfield(L, -2, "ok");
    break;
  case REDIS_REPLY_ERROR:
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, reply->str, reply->len);
    lua_setfield(L, -2, "err");
    break;
  case REDIS_REPLY_ARRAY:
    lua_createtable(L, reply->elements > 0x7fffffff ? 0 : (int)reply->elements, 0);
    for (i = 0; i < reply->elements; i++) {
      push_reply(L, reply->element[i]);
      lua_rawseti(L, -2, (int)(i + 1));
    }
    break;
  default:
    lua_pushboolean(L, 0); /* RESP3 types are never asked for (no HELLO 3) */
    break;
  }
}

/* r:reply() -> the next complete reply | nothing (needs more bytes) |
 * nil, msg, "redis" (an error reply) | nil, msg, "protocol" (broken stream). */
static int l_reader_reply(lua_State *L) {
  sg_redis_reader *rr = open_reader(L);
  void *reply = NULL;
  if (rr->held != NULL) {
    freeReplyObject(rr->held);
    rr->held = NULL;
  }
  if (redisReaderGetReply(rr->reader, &reply) != REDIS_OK)
    return reader_failed(L, rr);
  if (reply == NULL) return 0;
  rr->buffered = 0;
  if (((redisReply *)reply)->type == REDIS_REPLY_ERROR) {
    const redisReply *e = (const redisReply *)reply;
    lua_pushnil(L);
    lua_pushlstring(L, e->str, e->len);
    lua_pushliteral(L, "redis");
    freeReplyObject(reply);
    return 3;
  }
  /* converting may raise (memory, stack): the reader owns the reply meanwhile */
  rr->held = reply;
  push_reply(L, (const redisReply *)reply);
  rr->held = NULL;
  freeReplyObject(reply);
  return 1;
}

/* r:pending() -> bytes fed since the last complete reply (lets the caller cap a reply). */
static int l_reader_pending(lua_State *L) {
  sg_redis_reader *rr = open_reader(L);
  lua_pushinteger(L, (lua_Integer)rr->buffered);
  return 1;
}

static int l_reader_close(lua_State *L) {
  sg_redis_reader *rr = check_reader(L);
  if (rr->held != NULL) {
    freeReplyObject(rr->held);
    rr->held = NULL;
  }
  if (rr->reader != NULL) {
    redisReaderFree(rr->reader);
    rr->reader = NULL;
  }
  return 0;
}

static int l_reader_tostring(lua_State *L) {
  sg_redis_reader *rr = check_reader(L);
  if (rr->reader == NULL) lua_pushfstring(L, "skewguard.redis_reader{closed}: %p", (void *)rr);
  else
    lua_pushfstring(L, "skewguard.redis_reader{%s, %d bytes pending}: %p",
                    rr->reader->err ? "failed" : "ok", (int)rr->buffered, (void *)rr);
  return 1;
}

void sg_open_redis(lua_State *L) {
  static const luaL_Reg methods[] = {{"feed", l_reader_feed},
                                     {"reply", l_reader_reply},
                                     {"pending", l_reader_pending},
                                     {"close", l_reader_close},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {
      {"__gc", l_reader_close}, {"__close", l_reader_close}, {"__tostring", l_reader_tostring}, {NULL, NULL}};
  static const luaL_Reg fns[] = {{"redis_format", l_redis_format},
                                 {"redis_reader", l_reader_new},
                                 {NULL, NULL}};
  sg_newclass(L, SG_REDIS_READER_MT, methods, meta);
  sg_setfuncs(L, fns, 0);
}
