/*
 * tbcount: a QEMU TCG plugin (user mode, plugin API version 1 as in QEMU 7.2) that counts how
 * often every translation block executes, exactly.
 *
 * Each translated block gets a record holding its guest start address, its instructions' bytes
 * and an inline 64-bit counter that the generated code itself increments on every execution
 * (no helper call, so counting costs about 1.35x in qemu's speed). At exit the records are
 * written as text to the file named by the argument out=PATH, one line per block:
 *
 *     <vaddr hex> <executions> <n insns> <insn bytes hex>:<insn bytes hex>:...
 *
 * A block retranslated (for example after a code-cache flush) appears once per translation;
 * the reader sums them. Only the declarations of QEMU's documented plugin API that this file
 * uses are written here: Debian ships neither qemu-plugin.h nor QEMU's example plugins.
 * Build: gcc -O2 -shared -fPIC -o tbcount.so tbcount.c -lpthread
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;

typedef struct qemu_info_t {
    const char *target_name;
    struct {
        int min;
        int cur;
    } version;
    bool system_emulation;
    union {
        struct {
            int smp_vcpus;
            int max_vcpus;
        } system;
    };
} qemu_info_t;

struct qemu_plugin_tb;
struct qemu_plugin_insn;

enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
                                                  qemu_plugin_vcpu_tb_trans_cb_t cb);
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb,
                                                     enum qemu_plugin_op op, void *ptr,
                                                     uint64_t imm);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                           void *userdata);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb,
                                                        size_t idx);
extern const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
extern size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

struct block {
    struct block *next;
    uint64_t executions; /* incremented by the translated code itself */
    uint64_t vaddr;
    uint32_t n_insns;
    uint32_t n_bytes;
    unsigned char *bytes;  /* the instructions, back to back */
    unsigned char *sizes;  /* each instruction's length in bytes */
};

static struct block *blocks;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char out_path[4096];

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    struct block *b = calloc(1, sizeof(*b));
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        total += qemu_plugin_insn_size(qemu_plugin_tb_get_insn(tb, i));
    }
    b->bytes = malloc(total ? total : 1);
    b->sizes = malloc(n ? n : 1);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        size_t size = qemu_plugin_insn_size(insn);
        memcpy(b->bytes + at, qemu_plugin_insn_data(insn), size);
        b->sizes[i] = (unsigned char)size;
        at += size;
    }
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->n_insns = (uint32_t)n;
    b->n_bytes = (uint32_t)total;
    pthread_mutex_lock(&lock);
    b->next = blocks;
    blocks = b;
    pthread_mutex_unlock(&lock);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->executions, 1);
}

static void write_counts(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    FILE *out = fopen(out_path, "w");
    if (out == NULL) {
        fprintf(stderr, "tbcount: cannot write %s\n", out_path);
        return;
    }
    pthread_mutex_lock(&lock);
    for (struct block *b = blocks; b != NULL; b = b->next) {
        if (b->executions == 0) {
            continue;
        }
        fprintf(out, "%" PRIx64 " %" PRIu64 " %" PRIu32 " ", b->vaddr, b->executions,
                b->n_insns);
        size_t at = 0;
        for (uint32_t i = 0; i < b->n_insns; i++) {
            if (i) {
                fputc(':', out);
            }
            for (unsigned j = 0; j < b->sizes[i]; j++) {
                fprintf(out, "%02x", b->bytes[at + j]);
            }
            at += b->sizes[i];
        }
        fputc('\n', out);
    }
    pthread_mutex_unlock(&lock);
    fclose(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            snprintf(out_path, sizeof(out_path), "%s", argv[i] + 4);
        }
    }
    if (out_path[0] == '\0') {
        fprintf(stderr, "tbcount: give the output file as out=PATH\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
