/* memfd_create: a shmem file, sized by ftruncate, whose shared mappings share pages
   (also with a forked child). */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define P 4096

int main(void)
{
	static char buf[P];
	int m = memfd_create("buf", MFD_CLOEXEC);
	char *a = mmap(NULL, 4 * P, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
	madvise(a, P, MADV_POPULATE_READ);
	ftruncate(m, 2 * P);
	madvise(a, 2 * P, MADV_POPULATE_WRITE);
	madvise(a + 2 * P, P, MADV_POPULATE_WRITE);
	char *b = mmap(NULL, 2 * P, PROT_READ, MAP_SHARED, m, 0);
	madvise(b, 2 * P, MADV_POPULATE_READ);
	write(m, buf, 100);
	pwrite(m, buf, P, 3 * P);
	madvise(a + 3 * P, P, MADV_POPULATE_WRITE);
	if (fork() == 0) {
		char *c = mmap(NULL, 4 * P, PROT_READ, MAP_SHARED, m, 0);
		madvise(c, 4 * P, MADV_POPULATE_READ);
		ftruncate(m, P);
		_exit(0);
	}
	wait(NULL);
	madvise(a + P, P, MADV_POPULATE_READ);
	madvise(a, P, MADV_POPULATE_READ);
	lseek(m, 0, SEEK_END);
	return 0;
}
