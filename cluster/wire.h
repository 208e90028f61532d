/* wire.h: the cluster's wire protocol, every message in one place.
 *
 * A frame is a 4-byte big-endian length N, then N bytes holding exactly one
 * msgpack map. The map's key "t" names the message type (a string); the
 * other keys are that type's fields. Unknown keys are ignored, so a newer
 * peer may add fields; a missing or wrongly typed field, a frame whose body
 * is not one whole map, an empty frame or one longer than GL_WIRE_MAX is
 * malformed. Nothing read from a peer is trusted before it is checked here:
 * a decoder error is the caller's cue to close that one connection.
 *
 * Every connection starts with the handshake (auth.h): the listening side
 * sends hello, the connecting side answers auth, the listener answers
 * welcome (or error, then closes). Only then do the other messages flow.
 *
 * Rows move as chunk messages, each a run of whole msgpack rows of one
 * shard (job, stage, task, part) of at most GL_WIRE_CHUNK_MAX bytes: from
 * an executor to its agent (puts, on its stdout pipe, before its done),
 * and from an agent to whoever sent it a fetch (a stream per fetch, ended
 * by an end message). A row longer than a chunk travels in pieces with
 * nrows 0, the last piece saying 1 (stream.h). So no size limit on a
 * stage's output is left anywhere: only one message is bounded.
 * Format of the body: https://github.com/msgpack/msgpack/blob/master/spec.md */
#ifndef GL_WIRE_H
#define GL_WIRE_H

#include "buf.h"
#include "err.h"

#include <stdbool.h>
#include <stdint.h>

#define GL_WIRE_MAX (64u << 20)  /* largest frame body, bytes */
#define GL_WIRE_HS_MAX 4096      /* largest frame before the handshake is over */
#define GL_WIRE_VERSION 1        /* protocol version, sent in hello */
#define GL_NONCE_LEN 32
#define GL_MAC_LEN 32            /* HMAC-SHA256 */
#define GL_ADDR_MAX 256          /* "host:port", NUL included */
#define GL_ROLE_MAX 16
#define GL_TEXT_MAX 512          /* error text kept, NUL included; longer is cut */
#define GL_AGENTS_MAX 65536      /* agents in one status reply */
#define GL_WIRE_CHUNK_MAX (8u << 20) /* rows in one chunk message, bytes */
#define GL_FETCH_TASKS_MAX 65536 /* producing tasks named in one fetch */

enum gl_msg_type {
    GL_MSG_HELLO = 1, /* listener -> peer: version, nonce */
    GL_MSG_AUTH,      /* peer -> listener: role, nonce, mac (auth.h) */
    GL_MSG_WELCOME,   /* listener -> peer: mac proving the listener knows the secret */
    GL_MSG_ERROR,     /* either way: text; the sender closes the connection after it */
    GL_MSG_HEARTBEAT, /* agent -> master: agent (registers on the first one) */
    GL_MSG_STATUS,    /* client -> master or agent: asks for what it knows */
    GL_MSG_AGENTS,    /* master or agent -> client: agents[nagents] */
    GL_MSG_TASK,      /* driver -> agent -> executor: job, task, payload (opaque to the agent), and
                       * parts (the partitions of a stage task's output, which the agent keeps) */
    GL_MSG_DONE,      /* executor -> agent -> driver: job, task, ok, and payload (ok) or text;
                       * lost: the agent an input could not be fetched from, if that is why */
    GL_MSG_SLOTS,     /* driver -> master: want executor slots; answered by agents, slots granted each */
    GL_MSG_CHUNK,     /* executor -> agent (puts), agent -> fetcher: job, stage, task, part, nrows,
                       * payload: rows of one shard, back to back */
    GL_MSG_FETCH,     /* executor or driver -> agent: job, stage, part, tasks[ntasks]: partition
                       * part of those tasks' outputs, streamed as chunks in that order, then end */
    GL_MSG_END,       /* agent -> fetcher: job, stage, part, ok, text: a fetch's stream is over */
    GL_MSG_DROP,      /* driver -> agent: job; its shards are deleted (but the kept ones) */
    GL_MSG_KEEP,      /* driver -> agent: job, stage: that stage's shards outlive the job, kept
                       * by this connection (a driver's session, driver.c) until it closes or
                       * sends unkeep; the agent answers with the same message once they are */
    GL_MSG_UNKEEP,    /* driver -> agent: job, stage: shards this connection kept are deleted */
    GL_MSG_TYPES
};

/* What an agent says about itself, and what the master knows of it. */
typedef struct gl_agent_info {
    char addr[GL_ADDR_MAX]; /* where the agent serves, "host:port" */
    uint32_t cores;         /* executor slots in all */
    uint32_t free_slots;    /* slots not running an executor */
    uint64_t memory;        /* bytes of store memory */
    uint64_t stored;        /* bytes of shards held */
    uint32_t heartbeat_ms;  /* the agent's heartbeat interval */
    uint64_t age_ms;        /* in agents replies: time since its last heartbeat */
} gl_agent_info;

typedef struct gl_msg {
    enum gl_msg_type type;
    uint32_t version;                /* hello */
    char role[GL_ROLE_MAX];          /* auth: "agent", "client", ... */
    uint8_t nonce[GL_NONCE_LEN];     /* hello, auth */
    uint8_t mac[GL_MAC_LEN];         /* auth, welcome */
    char text[GL_TEXT_MAX];          /* error: control bytes shown as '?' */
    gl_agent_info agent;             /* heartbeat */
    gl_agent_info *agents;           /* agents: owned by the message, see gl_msg_free */
    uint32_t nagents;
    uint64_t job, task;              /* task, done: task is stage << 32 | index; chunk: the index */
    uint32_t want;                   /* slots */
    bool ok;                         /* done, end */
    uint8_t *payload;                /* task, done, chunk: decoded, owned (gl_msg_free); encoded, borrowed */
    size_t npayload;
    uint32_t parts;                  /* task: 0 for a task with no shards (a function call) */
    bool disk;                       /* task: its shard goes to LMDB (an on_disk() dataset) */
    char lost[GL_ADDR_MAX];          /* done: "" unless an input agent failed it */
    uint32_t stage, part;            /* chunk, fetch, end; stage: keep, unkeep */
    uint64_t nrows;                  /* chunk */
    uint32_t *tasks;                 /* fetch: like payload, owned when decoded */
    uint32_t ntasks;
} gl_msg;

/* The name of a type ("hello", ...), or "?" for a value outside the enum. */
const char *gl_msg_name(int type);

/* Appends m as one frame to out. 0, GL_ENOMEM, or GL_EINVAL (with err) when
 * the body would pass GL_WIRE_MAX or a field is out of range. */
int gl_wire_encode(gl_buf *out, const gl_msg *m, gl_err *err);

/* Decodes one frame body (without its length prefix) into m, which the call
 * zeroes first. 0, or GL_EINVAL with the reason in err; on success m may own
 * memory (gl_msg_free). */
int gl_wire_decode(const uint8_t *body, size_t len, gl_msg *m, gl_err *err);

/* Frees what a decoded message owns (agents, payload, tasks) and zeroes those fields. */
void gl_msg_free(gl_msg *m);

/* Incremental decoding of a byte stream: feed what each read returned, then
 * take whole frames while there are any. A frame may arrive split across
 * any number of reads, and one read may hold several frames. The length is
 * checked as soon as its 4 bytes are in, so an oversized frame is refused
 * before its body is buffered. A connection keeps max at GL_WIRE_HS_MAX
 * until the peer has authenticated, so a stranger can't make it buffer
 * more than that. */
typedef struct gl_wire_reader {
    gl_buf buf; /* bytes received and not yet consumed start at off */
    size_t off;
    uint32_t max; /* the bound on a frame's body; 0 means GL_WIRE_MAX */
} gl_wire_reader;

/* Appends n bytes. 0, or GL_ENOMEM. */
int gl_wire_feed(gl_wire_reader *r, const void *p, size_t n, gl_err *err);

/* 1: a frame was taken and decoded into m (caller frees with gl_msg_free);
 * 0: more bytes are needed; GL_EINVAL: the stream is malformed (too long,
 * empty or bad body; err says which) and can't be resynchronised. */
int gl_wire_next(gl_wire_reader *r, gl_msg *m, gl_err *err);

/* Bytes buffered and not yet taken. */
static inline size_t gl_wire_pending(const gl_wire_reader *r) { return r->buf.len - r->off; }

void gl_wire_reader_free(gl_wire_reader *r);

#endif
