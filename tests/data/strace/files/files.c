/* Files as a log sees them: sizes set by write, pwrite, ftruncate and fallocate,
   checked by MADV_POPULATE_* (EFAULT past the end of the file); descriptors from
   dup, dup2, dup3, fcntl, pipe2, socket and eventfd; openat(dirfd), chdir, fchdir. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define P 4096

int main(void)
{
	static char buf[3 * P];
	char cwd[256];
	memset(buf, 'x', sizeof buf);
	mkdir("d", 0755);
	int dfd = open("d", O_RDONLY | O_DIRECTORY);
	int fd = openat(dfd, "data", O_RDWR | O_CREAT | O_TRUNC, 0644);
	write(fd, buf, 5000);
	char *p = mmap(NULL, 4 * P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	madvise(p, 2 * P, MADV_POPULATE_WRITE);
	madvise(p + 2 * P, P, MADV_POPULATE_READ);
	pwrite(fd, buf, 100, 12000);
	madvise(p + 2 * P, P, MADV_POPULATE_READ);
	lseek(fd, 0, SEEK_CUR);
	lseek(fd, 0, SEEK_END);
	ftruncate(fd, P);
	madvise(p + P, P, MADV_POPULATE_READ);
	fallocate(fd, 0, 0, 4 * P);
	madvise(p + 3 * P, P, MADV_POPULATE_WRITE);
	fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 8 * P);
	lseek(fd, 0, SEEK_END);
	int fd2 = dup(fd);
	int fd3 = fcntl(fd, F_DUPFD_CLOEXEC, 20);
	dup2(fd, 30);
	dup3(fd, 31, O_CLOEXEC);
	mmap(NULL, P, PROT_READ, MAP_SHARED, fd3, 0);
	mmap(NULL, P, PROT_READ, MAP_SHARED, 31, 3 * P);
	close(fd);
	close(fd2);
	int fa = open("d/append", O_WRONLY | O_CREAT | O_APPEND, 0644);
	write(fa, buf, 3000);
	lseek(fa, 0, SEEK_SET);
	write(fa, buf, 3000);
	lseek(fa, 0, SEEK_CUR);
	int fr = open("d/append", O_RDONLY);
	char *q = mmap(NULL, 3 * P, PROT_READ, MAP_PRIVATE, fr, 0);
	madvise(q + P, P, MADV_POPULATE_READ);
	madvise(q + 2 * P, P, MADV_POPULATE_READ);
	read(fr, buf, 100);
	lseek(fr, 0, SEEK_CUR);
	mmap(NULL, P, PROT_READ | PROT_WRITE, MAP_SHARED, fr, 0);
	write(fr, buf, 1);
	ftruncate(fr, 0);
	open("d/append", O_RDONLY | O_CREAT | O_EXCL, 0644);
	open("d/missing", O_RDONLY);
	chdir("d");
	int rel = open("append", O_RDONLY);
	mmap(NULL, 2 * P, PROT_READ, MAP_PRIVATE, rel, 0);
	chdir("..");
	fchdir(dfd);
	getcwd(cwd, sizeof cwd);
	open("../d/./append", O_RDONLY);
	int ps[2];
	pipe2(ps, O_CLOEXEC);
	mmap(NULL, P, PROT_READ, MAP_SHARED, ps[0], 0);
	mmap(NULL, P, PROT_WRITE, MAP_SHARED, ps[1], 0);
	write(ps[1], buf, 10);
	lseek(ps[0], 0, SEEK_SET);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	mmap(NULL, P, PROT_READ, MAP_SHARED, s, 0);
	int e = eventfd(0, EFD_CLOEXEC);
	mmap(NULL, P, PROT_READ, MAP_SHARED, e, 0);
	mmap(NULL, P, PROT_READ, MAP_SHARED, dfd, 0);
	ftruncate(ps[1], 0);
	unlink("data");
	madvise(p, 4 * P, MADV_POPULATE_READ);
	return 0;
}
