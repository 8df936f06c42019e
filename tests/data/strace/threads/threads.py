# Three Python threads each allocating big bytearrays (glibc mmaps them, and gives each
# thread its own malloc arena), then freeing them.
import threading

def work(n):
    blocks = [bytearray((n + 1) << 18) for _ in range(3)]
    del blocks

ts = [threading.Thread(target=work, args=(i,)) for i in range(3)]
for t in ts:
    t.start()
for t in ts:
    t.join()
