/*
 * libFuzzer target: protobuf-c's decoder (protobuf_c_message_unpack) on every request and
 * response message of the API, with the descriptors generated into Sources/GeneratedCProtos.
 *
 * Input: one selector byte (message number = selector % count, the table of
 * Tests/Fuzz/messages.py), then the bytes to decode. On success:
 *   - every field of the decoded message is read, recursively, through its descriptor
 *     (strings to their NUL, bytes and repeated arrays to their length, unknown fields), so
 *     AddressSanitizer sees any pointer or length protobuf-c got wrong; the walk's branches
 *     on field kinds and counts also tell the fuzzer which shapes it has reached (libprotobuf-c
 *     itself is the system library, not instrumented);
 *   - protobuf_c_message_check must accept it;
 *   - packing it, unpacking that and packing again gives the same bytes (a stable round trip).
 *     Known exception, skipped: protobuf-c 1.4.1 accepts field number 0 when the key is
 *     written in more than one byte (80 00 = key 0), keeps it as an unknown field and packs
 *     it as the one-byte key 00, which it then rejects (C++ and upb reject both forms).
 * The messages are freed (LeakSanitizer checks it).
 */
#include <protobuf-c/protobuf-c.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messages_c.inc" /* extern declarations and the DESCRIPTORS table */

#define COUNT (sizeof DESCRIPTORS / sizeof DESCRIPTORS[0])

static void fail(const char *what, const char *name)
{
    fprintf(stderr, "fuzz_protobuf_c: %s (%s)\n", what, name);
    abort();
}

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM: return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    }
    return 0;
}

static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ull; }

static uint64_t walk(const ProtobufCMessage *m, int depth);

static uint64_t bytes_hash(const uint8_t *p, size_t n)
{
    uint64_t h = n;
    for (size_t i = 0; i < n; i++) h = mix(h, p[i]);
    return h;
}

/* One value of field f at p. */
static uint64_t value(const ProtobufCFieldDescriptor *f, const void *p, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        if (!s) return 1;
        size_t n = strlen(s);
        return n == 0 ? 2 : bytes_hash((const uint8_t *)s, n);
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        if (b->len && !b->data) fail("bytes field with a length and no data", f->name);
        return b->len == 0 ? 3 : bytes_hash(b->data, b->len);
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        if (!sub) return 4;
        if (sub->descriptor != f->descriptor) abort();
        return walk(sub, depth + 1);
    }
    case PROTOBUF_C_TYPE_BOOL: return *(const protobuf_c_boolean *)p ? 5 : 6;
    default: {
        uint64_t v = 0;
        memcpy(&v, p, elem_size(f->type));
        return v == 0 ? 7 : mix(f->type, v);
    }
    }
}

static int unknown_field_zero; /* an unknown field with field number 0 was kept (see above) */

static uint64_t walk(const ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    uint64_t h = depth;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *member = base + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)member;
            if (n && !arr) fail("repeated field with a count and no array", f->name);
            size_t es = elem_size(f->type);
            for (size_t k = 0; k < n; k++) h = mix(h, value(f, arr + k * es, depth));
            h = mix(h, n > 2 ? 3 : n);
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)(base + f->quantifier_offset) != f->id) continue;
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset) {
            if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset)) continue;
        }
        h = mix(h, value(f, member, depth));
    }
    for (unsigned k = 0; k < m->n_unknown_fields; k++) {
        const ProtobufCMessageUnknownField *u = &m->unknown_fields[k];
        if (u->tag == 0) unknown_field_zero = 1;
        h = mix(h, bytes_hash(u->data, u->len) ^ u->tag ^ u->wire_type);
    }
    return h;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *out = malloc(n ? n : 1);
    if (!out) abort();
    size_t w = protobuf_c_message_pack(m, out);
    if (w != n) fail("packed size differs from get_packed_size", m->descriptor->name);
    *len = n;
    return out;
}

volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const ProtobufCMessageDescriptor *d = DESCRIPTORS[data[0] % COUNT];
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
    if (!m) return 0;
    unknown_field_zero = 0;
    sink = walk(m, 0);
    if (!protobuf_c_message_check(m)) fail("an unpacked message fails protobuf_c_message_check", d->name);
    size_t n1, n2;
    uint8_t *p1 = pack(m, &n1);
    protobuf_c_message_free_unpacked(m, NULL);
    if (unknown_field_zero) {
        free(p1);
        return 0;
    }
    ProtobufCMessage *m2 = protobuf_c_message_unpack(d, NULL, n1, p1);
    if (!m2) fail("protobuf-c cannot unpack what it packed", d->name);
    uint8_t *p2 = pack(m2, &n2);
    if (n1 != n2 || memcmp(p1, p2, n1) != 0) fail("pack(unpack(pack(m))) differs from pack(m)", d->name);
    protobuf_c_message_free_unpacked(m2, NULL);
    free(p1);
    free(p2);
    return 0;
}
