/* LD_PRELOAD library for record.sh: when the program exits, copy its
   /proc/self/maps to $MMSIM_MAPS_OUT (the real final layout to compare with). */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((destructor)) static void copy_maps(void)
{
	const char *out = getenv("MMSIM_MAPS_OUT");
	char buf[65536];
	ssize_t n, len = 0;
	int in, fd;

	if (!out)
		return;
	in = open("/proc/self/maps", O_RDONLY);
	if (in < 0)
		return;
	while (len < (ssize_t)sizeof(buf) && (n = read(in, buf + len, sizeof(buf) - len)) > 0)
		len += n;
	close(in);
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return;
	if (write(fd, buf, len) != len)
		len = -1;
	close(fd);
}
