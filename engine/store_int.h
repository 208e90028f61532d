/* store_int.h: the store's state, shared by store_mem.c and store_lmdb.c. */
#ifndef GL_STORE_INT_H
#define GL_STORE_INT_H

#include "store.h"

#include <lmdb.h>
#include <pthread.h>

struct gl_store {
    atomic_int refs;
    uint64_t budget;
    uint64_t mem_limit;        /* chunks in memory past this spill */
    uint64_t op_share;
    uint32_t workers;
    _Atomic uint64_t used;     /* bytes of chunks in memory */
    _Atomic uint64_t read;     /* bytes read from LMDB, for drop_map */
    atomic_uint next_id;       /* output ids, for LMDB keys */
    pthread_mutex_t lock;      /* opening the environment */
    atomic_bool opened;
    bool own_dir;              /* made here: removed at the end */
    char *dir;                 /* NULL until opened, unless chosen */
    int lockfd;
    MDB_env *env;
    MDB_dbi dbi;
    uintptr_t map, mapend;     /* the LMDB map's address range */
    gl_err open_err;           /* why opening failed, once it has */
};

/* Frees one chunk held in memory and releases its charge. */
void gl_chunk_release(gl_store *st, gl_chunk *c);

/* Opens the environment once; a failure is kept and returned again. */
int gl_store_open(gl_store *s, gl_err *err);

#endif
