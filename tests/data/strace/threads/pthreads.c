/* Four pthreads that mmap, mprotect and munmap at once, then exit; main joins them.
   argv[1]: the rounds each thread makes (4 by default). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

static int rounds = 4;

static void *work(void *arg)
{
    long n = (long)arg;
    for (int i = 0; i < rounds; i++) {
        size_t len = (size_t)(n + 1) << 16;
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        p[0] = 1;
        mprotect(p, 4096, PROT_READ);
        munmap(p + len / 2, len / 2);
        munmap(p, len / 2);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        rounds = atoi(argv[1]);
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, work, (void *)i);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    return 0;
}
