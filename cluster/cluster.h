/* cluster.h: the cluster commands, entered from cli/main.c before any Lua
 * state exists. argv[0] is the command's name ("master", ...); each returns
 * the process's exit status: 0, 1 when it failed, 2 for a usage error. */
#ifndef GL_CLUSTER_H
#define GL_CLUSTER_H

int gl_master_main(int argc, char **argv);
int gl_agent_main(int argc, char **argv);
int gl_status_main(int argc, char **argv);

/* The executor runs Lua: main.c makes the state (package.path set) first. */
typedef struct lua_State lua_State;
int gl_executor_main(lua_State *L, int argc, char **argv);

/* Formats a byte count for people ("1.5 GiB"). */
const char *gl_fmt_bytes(unsigned long long n, char *out, unsigned long max);

#endif
