/* gleam.h: the public C API of libgleam.
 *
 * This header grows with the embedding issue; for now it names the library
 * and its version. Everything else in engine/ is private: Lua reaches it
 * through the FFI declarations in lua/gleam/core.lua. */
#ifndef GLEAM_H
#define GLEAM_H

#ifdef __cplusplus
extern "C" {
#endif

#define GLEAM_VERSION "0.1.0"
#define GLEAM_VERSION_MAJOR 0
#define GLEAM_VERSION_MINOR 1
#define GLEAM_VERSION_PATCH 0

/* The library's version string (static storage; never freed). */
const char *gleam_version(void);

#ifdef __cplusplus
}
#endif

#endif
