/* registers: values live only in registers while the target spins, so a dump catches them
 * there. Every general-purpose register but rsp, all 16 ymm registers (xmm without AVX),
 * MXCSR and the x87 control word are loaded with known values, then the thread spins until
 * SIGUSR1; after the loop the registers are stored and compared.
 * READY is written by a raw write(2) inside the asm block, after the registers that the
 * syscall does not touch are loaded, so a dump after READY finds the values in registers.
 * Corruption modes flip a register in the signal frame of the SIGUSR1 handler, which
 * rt_sigreturn then loads: exactly what a wrong register restore would look like. */
#include "common.h"
#include <signal.h>
#include <ucontext.h>

static const char *const modes[] = {"gp", "rbp", "r11", "xmm", "ymm", "mxcsr", "x87", NULL};

/* Referenced by name from the asm below, hence global and unique. */
uint64_t hnd_reg_in[16], hnd_reg_out[16], hnd_saved_rbp;
uint8_t hnd_vec_in[16 * 32] __attribute__((aligned(32))), hnd_vec_out[16 * 32] __attribute__((aligned(32)));
uint32_t hnd_mxcsr_in = 0x1f80 | (3 << 13), hnd_mxcsr_out; /* round toward zero */
uint16_t hnd_fpucw_in = 0x037f | (3 << 10), hnd_fpucw_out;
char hnd_ready_msg[64];
uint64_t hnd_ready_len;
volatile int hnd_spin_done;
extern char hnd_spin_begin[], hnd_spin_end[];

static const char *const gp_names[15] = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8",
                                         "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};
static volatile int signal_outside_loop;

static void on_usr1(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = ctx;
    greg_t rip = uc->uc_mcontext.gregs[REG_RIP];
    if (corrupt_mode) {
        uint8_t *fp = (uint8_t *)uc->uc_mcontext.fpregs;
        if (rip < (greg_t)hnd_spin_begin || rip >= (greg_t)hnd_spin_end)
            signal_outside_loop = 1;
        else if (corrupting("gp"))
            uc->uc_mcontext.gregs[REG_R12] ^= 1;
        else if (corrupting("rbp"))
            uc->uc_mcontext.gregs[REG_RBP] ^= 0x100;
        else if (corrupting("r11"))
            uc->uc_mcontext.gregs[REG_R11] ^= 0x8000;
        else if (corrupting("xmm"))
            uc->uc_mcontext.fpregs->_xmm[5].element[1] ^= 1;
        else if (corrupting("ymm"))
            fp[576 + 9 * 16 + 3] ^= 1; /* YMM_Hi128 of ymm9 in the standard-format xsave area */
        else if (corrupting("mxcsr"))
            uc->uc_mcontext.fpregs->mxcsr ^= 1 << 13;
        else if (corrupting("x87"))
            uc->uc_mcontext.fpregs->cwd ^= 1 << 10;
    }
    hnd_spin_done = 1;
}

#define LOAD_GP(i, reg) "mov hnd_reg_in+" #i "*8(%%rip), %%" reg "\n\t"
#define STORE_GP(i, reg) "mov %%" reg ", hnd_reg_out+" #i "*8(%%rip)\n\t"
#define VLOAD(n) "vmovdqu hnd_vec_in+" #n "*32(%%rip), %%ymm" #n "\n\t"
#define VSTORE(n) "vmovdqu %%ymm" #n ", hnd_vec_out+" #n "*32(%%rip)\n\t"
#define ALL16(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)

/* The asm defines global labels: it must be emitted exactly once (noinline, noclone). rbp is
 * saved in memory instead of clobbered, so this works with or without a frame pointer. */
#define SPIN_BODY(VEC_LOAD, VEC_STORE)                                                                  \
    "mov %%rbp, hnd_saved_rbp(%%rip)\n\t"                                                               \
    "ldmxcsr hnd_mxcsr_in(%%rip)\n\t"                                                                   \
    "fldcw hnd_fpucw_in(%%rip)\n\t" ALL16(VEC_LOAD) LOAD_GP(1, "rbx") LOAD_GP(6, "rbp") LOAD_GP(7, "r8") \
        LOAD_GP(8, "r9") LOAD_GP(9, "r10") LOAD_GP(11, "r12") LOAD_GP(12, "r13") LOAD_GP(13, "r14")      \
            LOAD_GP(14, "r15")                                                                          \
    "mov $1, %%eax\n\t"                                                                                 \
    "mov $1, %%edi\n\t"                                                                                 \
    "lea hnd_ready_msg(%%rip), %%rsi\n\t"                                                               \
    "mov hnd_ready_len(%%rip), %%rdx\n\t"                                                               \
    "syscall\n\t" LOAD_GP(0, "rax") LOAD_GP(2, "rcx") LOAD_GP(3, "rdx") LOAD_GP(4, "rsi")               \
        LOAD_GP(5, "rdi") LOAD_GP(10, "r11")                                                           \
    ".globl hnd_spin_begin\n"                                                                           \
    "hnd_spin_begin:\n\t"                                                                               \
    "pause\n\t"                                                                                         \
    "cmpl $0, hnd_spin_done(%%rip)\n\t"                                                                 \
    "je hnd_spin_begin\n"                                                                               \
    ".globl hnd_spin_end\n"                                                                             \
    "hnd_spin_end:\n\t" STORE_GP(0, "rax") STORE_GP(1, "rbx") STORE_GP(2, "rcx") STORE_GP(3, "rdx")      \
        STORE_GP(4, "rsi") STORE_GP(5, "rdi") STORE_GP(6, "rbp") STORE_GP(7, "r8") STORE_GP(8, "r9")     \
            STORE_GP(9, "r10") STORE_GP(10, "r11") STORE_GP(11, "r12") STORE_GP(12, "r13")              \
                STORE_GP(13, "r14") STORE_GP(14, "r15") ALL16(VEC_STORE)                                \
    "stmxcsr hnd_mxcsr_out(%%rip)\n\t"                                                                  \
    "fnstcw hnd_fpucw_out(%%rip)\n\t"                                                                   \
    "mov hnd_saved_rbp(%%rip), %%rbp\n\t"

#define CLOBBERS                                                                                        \
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",     \
        "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", \
        "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc"

__attribute__((noinline, noclone)) static void spin_avx(void)
{
    asm volatile(SPIN_BODY(VLOAD, VSTORE) "vzeroupper\n\t" ::: CLOBBERS);
}

int main(void)
{
    corrupt_init(modes);
    if (!__builtin_cpu_supports("avx")) {
        say("FAIL setup: the registers target needs AVX");
        return 1;
    }
    for (int i = 0; i < 15; i++)
        hnd_reg_in[i] = 0x0123456789abcdefULL * (uint64_t)(i + 3) ^ ((uint64_t)i << 56);
    fill_pattern(hnd_vec_in, sizeof hnd_vec_in, 0x9000);
    hnd_ready_len = snprintf(hnd_ready_msg, sizeof hnd_ready_msg, "READY %d\n", (int)getpid());

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);

    spin_avx();

    check(!signal_outside_loop, "SIGUSR1 arrived outside the spin loop: corruption not applied");
    for (int i = 0; i < 15; i++)
        check(hnd_reg_out[i] == hnd_reg_in[i], "%s is %#llx, expected %#llx", gp_names[i],
              (unsigned long long)hnd_reg_out[i], (unsigned long long)hnd_reg_in[i]);
    for (int n = 0; n < 16; n++) {
        check(memcmp(hnd_vec_out + n * 32, hnd_vec_in + n * 32, 16) == 0, "xmm%d differs", n);
        check(memcmp(hnd_vec_out + n * 32 + 16, hnd_vec_in + n * 32 + 16, 16) == 0, "upper half of ymm%d differs",
              n);
    }
    check(hnd_mxcsr_out == hnd_mxcsr_in, "mxcsr %#x, expected %#x", hnd_mxcsr_out, hnd_mxcsr_in);
    check(hnd_fpucw_out == hnd_fpucw_in, "x87 control word %#x, expected %#x", hnd_fpucw_out, hnd_fpucw_in);
    finish();
}
