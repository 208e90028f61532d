/* test_wire.c: the wire protocol (cluster/wire.c).
 *
 * Every message type goes through encode and the stream reader and comes
 * back equal, whatever way the stream is cut into reads; msgpack-c, an
 * independent codec, reads what we write and writes the malformed frames
 * (wrong types, missing fields, extra bytes) the decoder must refuse.
 * Truncated and random bodies are decoded from bytes that end at an
 * unreadable page, so a read past the end crashes even without ASan. */
#include "test.h"

#include "wire.h"

#include <msgpack.h>

/* ---- helpers ---- */

static void fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)test_rand();
}

static gl_agent_info agent(int i)
{
    gl_agent_info a = {0};
    snprintf(a.addr, sizeof a.addr, "10.0.0.%d:%d", i, 45327 + i);
    a.cores = 8u + (uint32_t)i;
    a.free_slots = (uint32_t)i;
    a.memory = (16ull << 30) + (uint64_t)i;
    a.stored = UINT64_MAX - (uint64_t)i; /* the largest value travels */
    a.heartbeat_ms = 1000;
    a.age_ms = 17u * (uint64_t)i;
    return a;
}

/* One message of each type, filled with recognisable values; what they
 * point to (agents, payloads) is static, not to be freed. */
static int samples(gl_msg *out)
{
    static gl_agent_info list[3];
    int n = 0;
    gl_msg m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_HELLO; m.version = GL_WIRE_VERSION; fill(m.nonce, GL_NONCE_LEN); out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_AUTH; strcpy(m.role, "agent"); fill(m.nonce, GL_NONCE_LEN); fill(m.mac, GL_MAC_LEN); out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_WELCOME; fill(m.mac, GL_MAC_LEN); out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_ERROR; strcpy(m.text, "handshake refused: wrong secret"); out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_HEARTBEAT; m.agent = agent(7); m.agent.age_ms = 0; out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_STATUS; out[n++] = m;
    for (int i = 0; i < 3; i++)
        list[i] = agent(i + 1);
    static uint8_t payload[300];
    fill(payload, sizeof payload);
    memset(&m, 0, sizeof m); m.type = GL_MSG_TASK; m.job = 1ull << 40; m.task = 7; m.payload = payload; m.npayload = sizeof payload; out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_DONE; m.job = 3; m.task = 7; m.ok = true; m.payload = payload; m.npayload = 5; out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_DONE; m.job = 3; m.task = 8; m.ok = false; strcpy(m.text, "job.lua:3: boom"); out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_SLOTS; m.want = 100000; out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_TASK; m.job = 9; m.task = 3ull << 32 | 1; m.payload = payload; m.npayload = 40; m.parts = 12; out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_DONE; m.job = 9; m.task = 4; m.ok = false; strcpy(m.text, "agent 10.0.0.2:1: shard not here"); strcpy(m.lost, "10.0.0.2:1"); out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_CHUNK; m.job = UINT64_MAX; m.stage = 2; m.task = UINT32_MAX; m.part = 7; m.nrows = 1ull << 40; m.payload = payload; m.npayload = sizeof payload; out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_CHUNK; m.job = 1; m.stage = 0; m.task = 0; m.part = 0; m.nrows = 0; out[n++] = m;
    static uint32_t tasks[5] = {0, 2, 3, 9, UINT32_MAX};
    memset(&m, 0, sizeof m); m.type = GL_MSG_FETCH; m.job = 5; m.stage = 1; m.part = 3; m.tasks = tasks; m.ntasks = 5; out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_END; m.job = 5; m.stage = 1; m.part = 3; m.ok = true; out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_END; m.job = 5; m.stage = 1; m.part = 4; strcpy(m.text, "shard not here: task 2 of stage 1"); out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_DROP; m.job = 1ull << 63; out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_TASK; m.job = 9; m.task = 2ull << 32; m.payload = payload; m.npayload = 4; m.parts = 3; m.disk = true; out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_KEEP; m.job = UINT64_MAX; m.stage = 4; out[n++] = m;
    memset(&m, 0, sizeof m); m.type = GL_MSG_UNKEEP; m.job = 2; m.stage = UINT32_MAX; out[n++] = m;
    /* the agents list last: samples() callers rely on it being static */
    memset(&m, 0, sizeof m); m.type = GL_MSG_AGENTS; m.agents = list; m.nagents = 3; out[n++] = m;
    return n;
}

static bool agent_eq(const gl_agent_info *a, const gl_agent_info *b)
{
    return !strcmp(a->addr, b->addr) && a->cores == b->cores && a->free_slots == b->free_slots &&
           a->memory == b->memory && a->stored == b->stored && a->heartbeat_ms == b->heartbeat_ms &&
           a->age_ms == b->age_ms;
}

static bool msg_eq(const gl_msg *a, const gl_msg *b)
{
    if (a->type != b->type || a->version != b->version || strcmp(a->role, b->role) ||
        memcmp(a->nonce, b->nonce, GL_NONCE_LEN) || memcmp(a->mac, b->mac, GL_MAC_LEN) ||
        strcmp(a->text, b->text) || !agent_eq(&a->agent, &b->agent) || a->nagents != b->nagents ||
        a->job != b->job || a->task != b->task || a->want != b->want || a->ok != b->ok || a->disk != b->disk || a->npayload != b->npayload ||
        (a->npayload && memcmp(a->payload, b->payload, a->npayload)) || a->parts != b->parts ||
        strcmp(a->lost, b->lost) || a->stage != b->stage || a->part != b->part || a->nrows != b->nrows ||
        a->ntasks != b->ntasks || (a->ntasks && memcmp(a->tasks, b->tasks, a->ntasks * sizeof *a->tasks)))
        return false;
    for (uint32_t i = 0; i < a->nagents; i++)
        if (!agent_eq(&a->agents[i], &b->agents[i]))
            return false;
    return true;
}

/* Decodes a body written by msgpack-c; returns the decoder's code. */
static int decode_sbuf(const msgpack_sbuffer *sb, gl_msg *m, gl_err *err)
{
    return gl_wire_decode(test_guarded(sb->data, sb->size), sb->size, m, err);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void pack_bin(msgpack_packer *pk, size_t n)
{
    uint8_t b[64] = {0};
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, b, n);
}

/* A bin of n zero bytes. */
static void pack_big(msgpack_packer *pk, size_t n)
{
    uint8_t *b = calloc(1, n);
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, b, n);
    free(b);
}

/* An array of n small integers. */
static void pack_ints(msgpack_packer *pk, uint32_t n)
{
    msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++)
        msgpack_pack_int(pk, 1);
}

/* ---- cases ---- */

TEST(roundtrip_each_type)
{
    gl_msg ms[32];
    int n = samples(ms);
    for (int i = 0; i < n; i++) {
        gl_buf b = {0};
        gl_err err = {0};
        REQUIRE(gl_wire_encode(&b, &ms[i], &err) == 0);
        /* the prefix is the body's length, big-endian */
        REQUIRE(b.len > 4);
        uint32_t len = (uint32_t)b.data[0] << 24 | (uint32_t)b.data[1] << 16 | (uint32_t)b.data[2] << 8 | b.data[3];
        CHECK_EQ(len, b.len - 4);
        gl_msg got;
        CHECK_EQ(gl_wire_decode(test_guarded(b.data + 4, len), len, &got, &err), 0);
        if (!CHECK(msg_eq(&ms[i], &got)))
            fprintf(stderr, "  type %s differs\n", gl_msg_name(ms[i].type));
        gl_msg_free(&got);
        gl_buf_free(&b);
    }
}

/* msgpack-c reads our bodies as one map whose "t" is the type's name. */
TEST(msgpack_c_reads_frames)
{
    gl_msg ms[32];
    int n = samples(ms);
    for (int i = 0; i < n; i++) {
        gl_buf b = {0};
        REQUIRE(gl_wire_encode(&b, &ms[i], NULL) == 0);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        REQUIRE(msgpack_unpack_next(&u, (const char *)b.data + 4, b.len - 4, &off) == MSGPACK_UNPACK_SUCCESS);
        CHECK_EQ(off, b.len - 4);
        REQUIRE(u.data.type == MSGPACK_OBJECT_MAP);
        bool found = false;
        for (uint32_t k = 0; k < u.data.via.map.size; k++) {
            msgpack_object_kv *kv = &u.data.via.map.ptr[k];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 1 && kv->key.via.str.ptr[0] == 't') {
                const char *name = gl_msg_name(ms[i].type);
                found = kv->val.type == MSGPACK_OBJECT_STR && kv->val.via.str.size == strlen(name) &&
                        !memcmp(kv->val.via.str.ptr, name, strlen(name));
            }
        }
        CHECK(found);
        msgpack_unpacked_destroy(&u);
        gl_buf_free(&b);
    }
}

/* All samples in one stream, cut into reads of every size from 1 byte up:
 * the reader gives back each message once, in order, whole. */
TEST(stream_split_anywhere)
{
    gl_msg ms[32];
    int n = samples(ms);
    gl_buf s = {0};
    for (int i = 0; i < n; i++)
        REQUIRE(gl_wire_encode(&s, &ms[i], NULL) == 0);
    for (size_t chunk = 1; chunk <= s.len; chunk += chunk < 16 ? 1 : 37) {
        gl_wire_reader r = {0};
        int got = 0;
        bool ok = true;
        for (size_t off = 0; off < s.len && ok; off += chunk) {
            size_t k = s.len - off < chunk ? s.len - off : chunk;
            ok = gl_wire_feed(&r, s.data + off, k, NULL) == 0;
            gl_msg m;
            gl_err err = {0};
            int rc;
            while (ok && (rc = gl_wire_next(&r, &m, &err)) == 1) {
                ok = got < n && msg_eq(&ms[got], &m);
                got++;
                gl_msg_free(&m);
            }
            ok = ok && rc == 0;
        }
        CHECK(ok);
        CHECK_EQ(got, n);
        CHECK_EQ(gl_wire_pending(&r), 0);
        gl_wire_reader_free(&r);
    }
    /* random cuts */
    for (int round = 0; round < 200; round++) {
        gl_wire_reader r = {0};
        int got = 0;
        size_t off = 0;
        while (off < s.len) {
            size_t k = 1 + test_below(64);
            if (k > s.len - off)
                k = s.len - off;
            REQUIRE(gl_wire_feed(&r, s.data + off, k, NULL) == 0);
            off += k;
            gl_msg m;
            while (gl_wire_next(&r, &m, NULL) == 1) {
                CHECK(got < n && msg_eq(&ms[got], &m));
                got++;
                gl_msg_free(&m);
            }
        }
        CHECK_EQ(got, n);
        gl_wire_reader_free(&r);
    }
    gl_buf_free(&s);
}

/* A frame cut short is incomplete on the stream, and its body cut short
 * is malformed on its own; neither reads past what it was given. */
TEST(truncated_frames)
{
    gl_msg ms[32];
    int n = samples(ms);
    for (int i = 0; i < n; i++) {
        gl_buf b = {0};
        REQUIRE(gl_wire_encode(&b, &ms[i], NULL) == 0);
        for (size_t cut = 0; cut < b.len; cut++) {
            gl_wire_reader r = {0};
            gl_msg m;
            REQUIRE(gl_wire_feed(&r, test_guarded(b.data, cut), cut, NULL) == 0);
            CHECK_EQ(gl_wire_next(&r, &m, NULL), 0);
            gl_wire_reader_free(&r);
            if (cut >= 4) {
                gl_err err = {0};
                size_t blen = cut - 4;
                CHECK_EQ(gl_wire_decode(test_guarded(b.data + 4, blen), blen, &m, &err), GL_EINVAL);
                CHECK(!strncmp(err.msg, "wire: malformed frame", 21));
            }
        }
        gl_buf_free(&b);
    }
}

/* A length past the bound is refused from its 4 bytes alone; one at the
 * bound waits for its body. An empty frame is malformed. */
TEST(oversized_and_empty)
{
    uint8_t over[4] = {(GL_WIRE_MAX + 1) >> 24, (uint8_t)((GL_WIRE_MAX + 1) >> 16),
                       (uint8_t)((GL_WIRE_MAX + 1) >> 8), (uint8_t)(GL_WIRE_MAX + 1)};
    uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    uint8_t at[4] = {GL_WIRE_MAX >> 24, (uint8_t)(GL_WIRE_MAX >> 16), (uint8_t)(GL_WIRE_MAX >> 8), (uint8_t)GL_WIRE_MAX};
    uint8_t empty[4] = {0, 0, 0, 0};
    const uint8_t *heads[] = {over, huge};
    for (int i = 0; i < 2; i++) {
        gl_wire_reader r = {0};
        gl_msg m;
        gl_err err = {0};
        REQUIRE(gl_wire_feed(&r, heads[i], 4, NULL) == 0);
        CHECK_EQ(gl_wire_next(&r, &m, &err), GL_EINVAL);
        CHECK(strstr(err.msg, "over the") != NULL);
        gl_wire_reader_free(&r);
    }
    gl_wire_reader r = {0};
    gl_msg m;
    gl_err err = {0};
    REQUIRE(gl_wire_feed(&r, at, 4, NULL) == 0);
    CHECK_EQ(gl_wire_next(&r, &m, &err), 0);
    gl_wire_reader_free(&r);
    REQUIRE(gl_wire_feed(&r, empty, 4, NULL) == 0);
    CHECK_EQ(gl_wire_next(&r, &m, &err), GL_EINVAL);
    CHECK(strstr(err.msg, "empty") != NULL);
    gl_wire_reader_free(&r);
    /* a reader's own bound (before the handshake) */
    uint8_t hs_at[4] = {0, 0, GL_WIRE_HS_MAX >> 8, (uint8_t)GL_WIRE_HS_MAX};
    uint8_t hs_over[4] = {0, 0, (GL_WIRE_HS_MAX + 1) >> 8, (uint8_t)(GL_WIRE_HS_MAX + 1)};
    r.max = GL_WIRE_HS_MAX;
    REQUIRE(gl_wire_feed(&r, hs_at, 4, NULL) == 0);
    CHECK_EQ(gl_wire_next(&r, &m, &err), 0);
    gl_wire_reader_free(&r);
    r.max = GL_WIRE_HS_MAX;
    REQUIRE(gl_wire_feed(&r, hs_over, 4, NULL) == 0);
    CHECK_EQ(gl_wire_next(&r, &m, &err), GL_EINVAL);
    CHECK(strstr(err.msg, "frame of 4097 bytes is over the 4096-byte bound") != NULL);
    gl_wire_reader_free(&r);
    CHECK_EQ(gl_wire_decode(test_guarded("", 0), 0, &m, &err), GL_EINVAL);
}

/* Well-formed msgpack that is not a valid message, written by msgpack-c. */
TEST(wrong_types)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    gl_msg m;
    gl_err err;
    int cases = 0;
#define CASE(build, expect) \
    do { \
        msgpack_sbuffer_clear(&sb); \
        build; \
        memset(&err, 0, sizeof err); \
        int rc_ = decode_sbuf(&sb, &m, &err); \
        if (!CHECK_EQ_RC(rc_, GL_EINVAL) || !CHECK(strstr(err.msg, expect) != NULL)) \
            fprintf(stderr, "  case %d: got '%s', expected '%s'\n", cases, err.msg, expect); \
        gl_msg_free(&m); \
        cases++; \
    } while (0)
#define CHECK_EQ_RC(a, b) CHECK((a) == (b))
    /* not a map */
    CASE((msgpack_pack_array(&pk, 1), pack_str(&pk, "status")), "not a map");
    CASE(msgpack_pack_int(&pk, 5), "not a map");
    CASE(pack_str(&pk, "hello"), "not a map");
    /* type missing, not a string, unknown */
    CASE((msgpack_pack_map(&pk, 0)), "no type");
    CASE((msgpack_pack_map(&pk, 1), pack_str(&pk, "v"), msgpack_pack_int(&pk, 1)), "no type");
    CASE((msgpack_pack_map(&pk, 1), pack_str(&pk, "t"), msgpack_pack_int(&pk, 1)), "not a string");
    CASE((msgpack_pack_map(&pk, 1), pack_str(&pk, "t"), pack_str(&pk, "shutdown")), "unknown message type");
    /* a key that is not a string */
    CASE((msgpack_pack_map(&pk, 2), pack_str(&pk, "t"), pack_str(&pk, "status"), msgpack_pack_int(&pk, 1),
          msgpack_pack_int(&pk, 2)), "key is not a string");
    /* bytes after the message */
    CASE((msgpack_pack_map(&pk, 1), pack_str(&pk, "t"), pack_str(&pk, "status"), msgpack_pack_nil(&pk)),
         "bytes after");
    /* hello: nonce of the wrong length, or an integer; version negative, double */
    CASE((msgpack_pack_map(&pk, 3), pack_str(&pk, "t"), pack_str(&pk, "hello"), pack_str(&pk, "v"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "nonce"), pack_bin(&pk, 31)), "wrong length");
    CASE((msgpack_pack_map(&pk, 3), pack_str(&pk, "t"), pack_str(&pk, "hello"), pack_str(&pk, "v"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "nonce"), msgpack_pack_int(&pk, 7)), "not a byte string");
    CASE((msgpack_pack_map(&pk, 3), pack_str(&pk, "t"), pack_str(&pk, "hello"), pack_str(&pk, "v"),
          msgpack_pack_int(&pk, -1), pack_str(&pk, "nonce"), pack_bin(&pk, 32)), "negative");
    CASE((msgpack_pack_map(&pk, 3), pack_str(&pk, "t"), pack_str(&pk, "hello"), pack_str(&pk, "v"),
          msgpack_pack_double(&pk, 1.0), pack_str(&pk, "nonce"), pack_bin(&pk, 32)), "not an integer");
    CASE((msgpack_pack_map(&pk, 3), pack_str(&pk, "t"), pack_str(&pk, "hello"), pack_str(&pk, "v"),
          msgpack_pack_uint64(&pk, 1ull << 40), pack_str(&pk, "nonce"), pack_bin(&pk, 32)), "out of range");
    CASE((msgpack_pack_map(&pk, 2), pack_str(&pk, "t"), pack_str(&pk, "hello"), pack_str(&pk, "v"),
          msgpack_pack_int(&pk, 1)), "lacks a field");
    /* auth: role too long, with a NUL, a map */
    CASE((msgpack_pack_map(&pk, 4), pack_str(&pk, "t"), pack_str(&pk, "auth"), pack_str(&pk, "role"),
          pack_str(&pk, "a-role-name-that-is-too-long"), pack_str(&pk, "nonce"), pack_bin(&pk, 32),
          pack_str(&pk, "mac"), pack_bin(&pk, 32)), "too long");
    CASE((msgpack_pack_map(&pk, 4), pack_str(&pk, "t"), pack_str(&pk, "auth"), pack_str(&pk, "role"),
          msgpack_pack_str(&pk, 3), msgpack_pack_str_body(&pk, "a\0b", 3), pack_str(&pk, "nonce"),
          pack_bin(&pk, 32), pack_str(&pk, "mac"), pack_bin(&pk, 32)), "NUL");
    CASE((msgpack_pack_map(&pk, 4), pack_str(&pk, "t"), pack_str(&pk, "auth"), pack_str(&pk, "role"),
          msgpack_pack_map(&pk, 0), pack_str(&pk, "nonce"), pack_bin(&pk, 32), pack_str(&pk, "mac"),
          pack_bin(&pk, 32)), "not a string");
    /* heartbeat: cores a string, missing addr */
    CASE((msgpack_pack_map(&pk, 7), pack_str(&pk, "t"), pack_str(&pk, "heartbeat"), pack_str(&pk, "addr"),
          pack_str(&pk, "h:1"), pack_str(&pk, "cores"), pack_str(&pk, "8"), pack_str(&pk, "slots"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "memory"), msgpack_pack_int(&pk, 1), pack_str(&pk, "stored"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "hb_ms"), msgpack_pack_int(&pk, 1)), "not an integer");
    CASE((msgpack_pack_map(&pk, 6), pack_str(&pk, "t"), pack_str(&pk, "heartbeat"), pack_str(&pk, "cores"),
          msgpack_pack_int(&pk, 8), pack_str(&pk, "slots"), msgpack_pack_int(&pk, 1), pack_str(&pk, "memory"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "stored"), msgpack_pack_int(&pk, 1), pack_str(&pk, "hb_ms"),
          msgpack_pack_int(&pk, 1)), "lacks a field");
    /* task and done: a payload that is not bytes, ok that is not a boolean, a missing text */
    CASE((msgpack_pack_map(&pk, 4), pack_str(&pk, "t"), pack_str(&pk, "task"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "task"), msgpack_pack_int(&pk, 1), pack_str(&pk, "payload"),
          msgpack_pack_array(&pk, 0)), "field 'payload' is not a byte string");
    CASE((msgpack_pack_map(&pk, 6), pack_str(&pk, "t"), pack_str(&pk, "done"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "task"), msgpack_pack_int(&pk, 1), pack_str(&pk, "ok"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "text"), pack_str(&pk, ""), pack_str(&pk, "payload"),
          pack_bin(&pk, 0)), "field 'ok' is not a boolean");
    CASE((msgpack_pack_map(&pk, 5), pack_str(&pk, "t"), pack_str(&pk, "done"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "task"), msgpack_pack_int(&pk, 1), pack_str(&pk, "ok"),
          msgpack_pack_true(&pk), pack_str(&pk, "payload"), pack_bin(&pk, 0)), "a done message lacks a field");
    CASE((msgpack_pack_map(&pk, 5), pack_str(&pk, "t"), pack_str(&pk, "task"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "task"), msgpack_pack_int(&pk, 1), pack_str(&pk, "payload"),
          pack_bin(&pk, 1), pack_str(&pk, "payload"), pack_bin(&pk, 1)), "appears twice");
    /* agents: not an array, an item not a map, a count the frame can't hold, an item lacking fields */
    CASE((msgpack_pack_map(&pk, 2), pack_str(&pk, "t"), pack_str(&pk, "agents"), pack_str(&pk, "agents"),
          msgpack_pack_map(&pk, 0)), "not an array");
    CASE((msgpack_pack_map(&pk, 2), pack_str(&pk, "t"), pack_str(&pk, "agents"), pack_str(&pk, "agents"),
          msgpack_pack_array(&pk, 1), msgpack_pack_int(&pk, 1)), "not a map");
    CASE((msgpack_pack_map(&pk, 2), pack_str(&pk, "t"), pack_str(&pk, "agents"), pack_str(&pk, "agents"),
          msgpack_pack_array(&pk, 1), msgpack_pack_map(&pk, 1), pack_str(&pk, "addr"), pack_str(&pk, "x:1")),
         "lacks a field");
    /* chunk: rows over the chunk bound, a task past 32 bits, a missing nrows */
    CASE((msgpack_pack_map(&pk, 7), pack_str(&pk, "t"), pack_str(&pk, "chunk"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "stage"), msgpack_pack_int(&pk, 1), pack_str(&pk, "task"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "part"), msgpack_pack_int(&pk, 1), pack_str(&pk, "nrows"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "rows"), pack_big(&pk, GL_WIRE_CHUNK_MAX + 1)),
         "field 'rows' is too long");
    CASE((msgpack_pack_map(&pk, 7), pack_str(&pk, "t"), pack_str(&pk, "chunk"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "stage"), msgpack_pack_int(&pk, 1), pack_str(&pk, "task"),
          msgpack_pack_uint64(&pk, 1ull << 32), pack_str(&pk, "part"), msgpack_pack_int(&pk, 1), pack_str(&pk, "nrows"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "rows"), pack_bin(&pk, 3)), "field 'task' is out of range");
    CASE((msgpack_pack_map(&pk, 6), pack_str(&pk, "t"), pack_str(&pk, "chunk"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "stage"), msgpack_pack_int(&pk, 1), pack_str(&pk, "task"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "part"), msgpack_pack_int(&pk, 1), pack_str(&pk, "rows"),
          pack_bin(&pk, 3)), "a chunk message lacks a field");
    /* a chunk's "payload" is not its rows: an unknown key, so rows are missing */
    CASE((msgpack_pack_map(&pk, 7), pack_str(&pk, "t"), pack_str(&pk, "chunk"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "stage"), msgpack_pack_int(&pk, 1), pack_str(&pk, "task"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "part"), msgpack_pack_int(&pk, 1), pack_str(&pk, "nrows"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "payload"), pack_bin(&pk, 3)), "a chunk message lacks a field");
    /* fetch: tasks not an array, empty, an item not an integer, more items than bytes */
    CASE((msgpack_pack_map(&pk, 5), pack_str(&pk, "t"), pack_str(&pk, "fetch"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "stage"), msgpack_pack_int(&pk, 1), pack_str(&pk, "part"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "tasks"), msgpack_pack_int(&pk, 1)), "field 'tasks' is not an array");
    CASE((msgpack_pack_map(&pk, 5), pack_str(&pk, "t"), pack_str(&pk, "fetch"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "stage"), msgpack_pack_int(&pk, 1), pack_str(&pk, "part"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "tasks"), msgpack_pack_array(&pk, 0)), "field 'tasks' is empty");
    CASE((msgpack_pack_map(&pk, 5), pack_str(&pk, "t"), pack_str(&pk, "fetch"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "stage"), msgpack_pack_int(&pk, 1), pack_str(&pk, "part"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "tasks"), msgpack_pack_array(&pk, 2), msgpack_pack_int(&pk, 1),
          pack_str(&pk, "2")), "field 'tasks' is not an integer");
    CASE((msgpack_pack_map(&pk, 5), pack_str(&pk, "t"), pack_str(&pk, "fetch"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "stage"), msgpack_pack_int(&pk, 1), pack_str(&pk, "part"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "tasks"), pack_ints(&pk, GL_FETCH_TASKS_MAX + 1)),
         "too many items");
    CASE((msgpack_pack_map(&pk, 4), pack_str(&pk, "t"), pack_str(&pk, "fetch"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "stage"), msgpack_pack_int(&pk, 1), pack_str(&pk, "part"),
          msgpack_pack_int(&pk, 1)), "a fetch message lacks a field");
    /* end: ok not a boolean; done: lost with a NUL; drop without a job */
    CASE((msgpack_pack_map(&pk, 6), pack_str(&pk, "t"), pack_str(&pk, "end"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "stage"), msgpack_pack_int(&pk, 1), pack_str(&pk, "part"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "ok"), pack_str(&pk, "yes"), pack_str(&pk, "text"),
          pack_str(&pk, "")), "field 'ok' is not a boolean");
    CASE((msgpack_pack_map(&pk, 7), pack_str(&pk, "t"), pack_str(&pk, "done"), pack_str(&pk, "job"),
          msgpack_pack_int(&pk, 1), pack_str(&pk, "task"), msgpack_pack_int(&pk, 1), pack_str(&pk, "ok"),
          msgpack_pack_false(&pk), pack_str(&pk, "text"), pack_str(&pk, ""), pack_str(&pk, "payload"),
          pack_bin(&pk, 0), pack_str(&pk, "lost"), msgpack_pack_str(&pk, 3), msgpack_pack_str_body(&pk, "a\0b", 3)),
         "NUL");
    CASE((msgpack_pack_map(&pk, 1), pack_str(&pk, "t"), pack_str(&pk, "drop")), "a drop message lacks a field");
    /* deeply nested unknown field: refused, not recursed into */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "t");
    pack_str(&pk, "status");
    pack_str(&pk, "junk");
    for (int i = 0; i < 10000; i++)
        msgpack_pack_array(&pk, 1);
    msgpack_pack_nil(&pk);
    CHECK_EQ(decode_sbuf(&sb, &m, &err), GL_EINVAL);
    CHECK(strstr(err.msg, "nested") != NULL);
    /* unknown fields are ignored, "t" may come anywhere */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "later");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "x");
    pack_str(&pk, "text");
    pack_str(&pk, "bad\nline\x01");
    pack_str(&pk, "t");
    pack_str(&pk, "error");
    CHECK_EQ(decode_sbuf(&sb, &m, &err), 0);
    CHECK_EQ(m.type, GL_MSG_ERROR);
    CHECK(!strcmp(m.text, "bad?line?")); /* control bytes never reach a log line */
    msgpack_sbuffer_destroy(&sb);
}

/* Random bodies and random mutations of valid frames: each decodes or is
 * refused with a message; nothing is read out of bounds, nothing leaks. */
TEST(random_bodies)
{
    gl_msg ms[32];
    int n = samples(ms);
    uint8_t junk[512];
    int ok = 0, refused = 0;
    for (int round = 0; round < 20000; round++) {
        size_t len = test_below(sizeof junk);
        fill(junk, len);
        gl_msg m;
        gl_err err = {0};
        int rc = gl_wire_decode(test_guarded(junk, len), len, &m, &err);
        if (rc == 0)
            ok++;
        else if (CHECK(rc == GL_EINVAL) && CHECK(err.msg[0]))
            refused++;
        gl_msg_free(&m);
    }
    CHECK(refused > 19000);
    for (int round = 0; round < 20000; round++) {
        gl_buf b = {0};
        REQUIRE(gl_wire_encode(&b, &ms[round % n], NULL) == 0);
        int flips = 1 + (int)test_below(4);
        for (int f = 0; f < flips; f++)
            b.data[4 + test_below((uint32_t)(b.len - 4))] = (uint8_t)test_rand();
        gl_msg m;
        gl_err err = {0};
        int rc = gl_wire_decode(test_guarded(b.data + 4, b.len - 4), b.len - 4, &m, &err);
        CHECK(rc == 0 || (rc == GL_EINVAL && err.msg[0]));
        if (rc == 0)
            ok++;
        gl_msg_free(&m);
        gl_buf_free(&b);
    }
    CHECK(ok > 0); /* some mutations only change a value */
    /* random junk on a stream ends in "need more" or an error, never a hang */
    for (int round = 0; round < 2000; round++) {
        gl_wire_reader r = {0};
        size_t len = test_below(sizeof junk);
        fill(junk, len);
        REQUIRE(gl_wire_feed(&r, junk, len, NULL) == 0);
        gl_msg m;
        int rc, frames = 0;
        while ((rc = gl_wire_next(&r, &m, NULL)) == 1) {
            gl_msg_free(&m);
            frames++;
        }
        CHECK(rc == 0 || rc == GL_EINVAL);
        gl_wire_reader_free(&r);
    }
}

/* Encoding refuses what the decoder would refuse. */
TEST(encode_refuses)
{
    gl_msg m;
    gl_buf b = {0};
    gl_err err = {0};
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_HEARTBEAT;
    memset(m.agent.addr, 'a', sizeof m.agent.addr); /* no NUL */
    CHECK_EQ(gl_wire_encode(&b, &m, &err), GL_EINVAL);
    CHECK_EQ(b.len, 0);
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_AGENTS;
    m.nagents = GL_AGENTS_MAX + 1;
    CHECK_EQ(gl_wire_encode(&b, &m, &err), GL_EINVAL);
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_CHUNK;
    m.npayload = GL_WIRE_CHUNK_MAX + 1;
    CHECK_EQ(gl_wire_encode(&b, &m, &err), GL_EINVAL);
    m.npayload = 0;
    m.task = 1ull << 32;
    CHECK_EQ(gl_wire_encode(&b, &m, &err), GL_EINVAL);
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_FETCH; /* no tasks */
    CHECK_EQ(gl_wire_encode(&b, &m, &err), GL_EINVAL);
    m.type = (enum gl_msg_type)99;
    CHECK_EQ(gl_wire_encode(&b, &m, &err), GL_EINVAL);
    CHECK(!strcmp(gl_msg_name(99), "?"));
    CHECK_EQ(b.len, 0);
    gl_buf_free(&b);
}

TEST_MAIN(T(roundtrip_each_type), T(msgpack_c_reads_frames), T(stream_split_anywhere), T(truncated_frames),
          T(oversized_and_empty), T(wrong_types), T(random_bodies), T(encode_refuses))
