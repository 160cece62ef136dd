// Reproducer: the PKRU in a core dump's NT_X86_XSTATE note is stale when the dumping task
// wrote PKRU and died before its next context switch (Linux 5.14 and later, x86 with PKU).
// See docs/findings/core-dump-pkru.md.
//
//   gcc -O2 -Wall -o core-dump-pkru docs/findings/core-dump-pkru.c && sudo ./core-dump-pkru [N]
//
// Needs root (it points /proc/sys/kernel/core_pattern at /tmp for the run and restores it).
// Forks N children (default 20); each writes PKRU = 0x55555550 and at once kills itself with
// SIGSEGV; the parent reads PKRU back from each core. Exit 0: every core right; 1: at least one
// stale; 4: cannot run here (no PKU, not root); 2: error.
#define _GNU_SOURCE
#include <cpuid.h>
#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CORE_PATTERN "/proc/sys/kernel/core_pattern"
#define WANT 0x55555550u

static void wrpkru(uint32_t v)
{
	asm volatile(".byte 0x0f,0x01,0xef" : : "a"(v), "c"(0), "d"(0));
}

static uint32_t rdpkru(void)
{
	uint32_t eax, edx;
	asm volatile(".byte 0x0f,0x01,0xee" : "=a"(eax), "=d"(edx) : "c"(0));
	return eax;
}

// PKRU from the NT_X86_XSTATE note of an ELF core (offset from CPUID leaf 0xD, sub-leaf 9).
static int core_pkru(const char *path, uint32_t off, uint32_t *pkru)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st))
		return -1;
	uint8_t *p = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return -1;
	Elf64_Ehdr *eh = (Elf64_Ehdr *)p;
	int found = -1;
	for (int i = 0; i < eh->e_phnum && found; i++) {
		Elf64_Phdr *ph = (Elf64_Phdr *)(p + eh->e_phoff + i * eh->e_phentsize);
		if (ph->p_type != PT_NOTE)
			continue;
		size_t pos = ph->p_offset, end = ph->p_offset + ph->p_filesz;
		while (pos + sizeof(Elf64_Nhdr) <= end) {
			Elf64_Nhdr *nh = (Elf64_Nhdr *)(p + pos);
			size_t desc = pos + sizeof(*nh) + ((nh->n_namesz + 3) & ~3u);
			if (nh->n_type == NT_X86_XSTATE && off + 4 <= nh->n_descsz) {
				memcpy(pkru, p + desc + off, 4);
				found = 0;
				break;
			}
			pos = desc + ((nh->n_descsz + 3) & ~3u);
		}
	}
	munmap(p, st.st_size);
	return found;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 20;
	unsigned int a, b, c, d;
	__cpuid_count(7, 0, a, b, c, d);
	if (!(c & (1u << 4))) {
		puts("SKIP: protection keys not enabled (CPUID OSPKE clear)");
		return 4;
	}
	__cpuid_count(0xd, 9, a, b, c, d);
	uint32_t off = b;
	char old[256] = "";
	FILE *f = fopen(CORE_PATTERN, "r");
	if (!f || !fgets(old, sizeof(old), f) || geteuid() != 0) {
		puts("SKIP: needs root to set " CORE_PATTERN);
		return 4;
	}
	fclose(f);
	f = fopen(CORE_PATTERN, "w");
	if (!f || fputs("/tmp/core-dump-pkru.%p", f) < 0 || fclose(f)) {
		perror(CORE_PATTERN);
		return 2;
	}
	struct rlimit unl = { RLIM_INFINITY, RLIM_INFINITY };
	setrlimit(RLIMIT_CORE, &unl);
	uint32_t at_fork = rdpkru();
	int right = 0;
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			signal(SIGSEGV, SIG_DFL);
			wrpkru(WANT);
			// No system call, no sleep: die before the next context switch.
			syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGSEGV);
			_exit(3);
		}
		int status;
		waitpid(pid, &status, 0);
		char path[64];
		snprintf(path, sizeof(path), "/tmp/core-dump-pkru.%d", pid);
		uint32_t got = 0;
		if (!WCOREDUMP(status) || core_pkru(path, off, &got)) {
			fprintf(stderr, "child %d: no core with NT_X86_XSTATE\n", pid);
			right = -1;
			break;
		}
		unlink(path);
		printf("child %2d: core PKRU %#010x%s\n", i, got,
		       got == WANT ? "" : got == at_fork ? "  (stale: the value at fork)" : "  (stale)");
		right += got == WANT;
	}
	f = fopen(CORE_PATTERN, "w");
	if (f) {
		old[strcspn(old, "\n")] = 0;
		fputs(old, f);
		fclose(f);
	}
	if (right < 0)
		return 2;
	printf("%d of %d cores carry the PKRU the child set (%#010x)\n", right, n, WANT);
	return right == n ? 0 : 1;
}
