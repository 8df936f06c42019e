/* The live side of `python -m benchmarks kernel`: does one piece of work and prints the
 * CPU seconds it took (getrusage of this process, plus its reaped children where a child
 * does part of the work), best of REPEATS.  Compiled at run time by benchmarks/kernel.py. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL
#define BASE ((char *)0x200000000000UL)

static double cpu(int who)
{
	struct rusage r;
	getrusage(who, &r);
	return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 +
	       r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

static double both(void) { return cpu(RUSAGE_SELF) + cpu(RUSAGE_CHILDREN); }

static char *anon(unsigned long pages)
{
	char *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(2); }
	return p;
}

static void touch(char *p, unsigned long pages)
{
	for (unsigned long i = 0; i < pages; i++)
		p[i * PAGE] = 1;
}

static char *alternating(unsigned long n)
{
	char *p = mmap(BASE, n * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(2); }
	for (unsigned long i = 1; i < n; i += 2)
		if (mprotect(p + i * PAGE, PAGE, PROT_READ)) { perror("mprotect"); exit(2); }
	return p;
}

/* One measurement of MODE over N units: CPU seconds. */
static double once(const char *mode, unsigned long n, char **argv)
{
	double t0, t1;
	if (!strcmp(mode, "touch")) {          /* write fault of n fresh pages */
		char *p = anon(n);
		t0 = cpu(RUSAGE_SELF);
		touch(p, n);
		t1 = cpu(RUSAGE_SELF);
		munmap(p, n * PAGE);
		return t1 - t0;
	}
	if (!strcmp(mode, "fork")) {           /* the parent's fork of n resident pages */
		char *p = anon(n);
		touch(p, n);
		t0 = cpu(RUSAGE_SELF);
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		t1 = cpu(RUSAGE_SELF);
		waitpid(pid, NULL, 0);
		munmap(p, n * PAGE);
		return t1 - t0;
	}
	if (!strcmp(mode, "exit")) {           /* a child's exit teardown of its n own pages */
		int fd[2];
		double before;
		if (pipe(fd)) exit(2);
		pid_t pid = fork();
		if (pid == 0) {
			char *p = anon(n);
			touch(p, n);
			double c = cpu(RUSAGE_SELF);
			if (write(fd[1], &c, sizeof c) != sizeof c) _exit(3);
			_exit(0);
		}
		t0 = cpu(RUSAGE_CHILDREN);
		if (read(fd[0], &before, sizeof before) != sizeof before) exit(2);
		waitpid(pid, NULL, 0);
		t1 = cpu(RUSAGE_CHILDREN);
		close(fd[0]); close(fd[1]);
		return (t1 - t0) - before;     /* child's total CPU minus what it used before exit */
	}
	if (!strcmp(mode, "smaps")) {          /* read /proc/self/smaps over n VMAs */
		static char buf[1 << 16];
		char *p = alternating(n);
		t0 = cpu(RUSAGE_SELF);
		int fd = open("/proc/self/smaps", O_RDONLY);
		while (read(fd, buf, sizeof buf) > 0)
			;
		close(fd);
		t1 = cpu(RUSAGE_SELF);
		munmap(p, n * PAGE);
		return t1 - t0;
	}
	if (!strcmp(mode, "forkexec")) {       /* n times fork + exec + exit + wait */
		char *args[] = { argv[0], NULL }, *env[] = { NULL };
		t0 = both();
		for (unsigned long i = 0; i < n; i++) {
			pid_t pid = fork();
			if (pid == 0) {
				execve(argv[0], args, env);
				_exit(127);
			}
			int st;
			waitpid(pid, &st, 0);
			if (!WIFEXITED(st) || WEXITSTATUS(st)) { fprintf(stderr, "exec failed\n"); exit(2); }
		}
		return both() - t0;
	}
	if (!strcmp(mode, "calls")) {          /* the replay trace's calls, read from a file */
		FILE *f = fopen(argv[0], "r");
		unsigned long cap = n, k = 0;
		struct call { char op; unsigned long addr, len; int arg; } *c = calloc(cap, sizeof *c);
		char op;
		while (k < cap && fscanf(f, " %c %lx %lu %d", &op, &c[k].addr, &c[k].len, &c[k].arg) == 4)
			c[k++].op = op;
		fclose(f);
		t0 = cpu(RUSAGE_SELF);
		for (unsigned long i = 0; i < k; i++) {
			void *a = (void *)c[i].addr;
			switch (c[i].op) {
			case 'm': mmap(a, c[i].len, c[i].arg, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0); break;
			case 'p': mprotect(a, c[i].len, c[i].arg); break;
			case 'a': madvise(a, c[i].len, c[i].arg); break;
			case 'u': munmap(a, c[i].len); break;
			}
		}
		t1 = cpu(RUSAGE_SELF);
		munmap(BASE, 1UL << 30);
		free(c);
		return t1 - t0;
	}
	fprintf(stderr, "unknown mode %s\n", mode);
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 4) { fprintf(stderr, "usage: helper MODE N REPEATS [ARG]\n"); return 2; }
	unsigned long n = strtoul(argv[2], NULL, 0);
	int repeats = atoi(argv[3]);
	double best = 1e30;
	for (int r = 0; r < repeats; r++) {
		double t = once(argv[1], n, argv + 4);
		if (t < best) best = t;
	}
	printf("%.9f\n", best);
	return 0;
}
