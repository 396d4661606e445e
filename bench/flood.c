/* Junk UDP datagrams at a target rate, for bench/flood.py (built with gcc at run time).

   usage: flood RATE SECONDS MODE TEMPLATE DEST...

   MODE: "random" (random bytes, 16..512 of them), "rais" (a copy of the datagram in
   the file TEMPLATE with its last 32 bytes, the HMAC, replaced by random bytes: the
   header passes every cheap check) or "mixed" (the two in turn for each destination).
   DEST: A.B.C.D:PORT; the datagrams go to the destinations in turn (list one twice to
   give it twice the share). Multicast leaves through eth0 with TTL 1, no loopback.
   Sends in batches of sendmmsg(2), paced to RATE per second, for SECONDS; prints
   "sent N errors E seconds S" (errors: datagrams the kernel refused). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAXLEN 1400
#define MAC 32

static uint64_t rng = 88172645463325252ULL;

static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void fill(unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        uint64_t r = next();
        memcpy(p + i, &r, n - i < 8 ? n - i : 8);
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: flood RATE SECONDS random|rais|mixed TEMPLATE DEST...\n");
        return 2;
    }
    double rate = atof(argv[1]), secs = atof(argv[2]);
    const char *mode = argv[3];
    int want_rais = !strcmp(mode, "rais"), mixed = !strcmp(mode, "mixed");
    if (rate <= 0 || secs <= 0 || (!want_rais && !mixed && strcmp(mode, "random"))) {
        fprintf(stderr, "flood: bad rate, seconds or mode\n");
        return 2;
    }
    static unsigned char tmpl[MAXLEN];
    FILE *f = fopen(argv[4], "rb");
    if (!f) {
        perror(argv[4]);
        return 2;
    }
    size_t tlen = fread(tmpl, 1, MAXLEN, f);
    fclose(f);
    if (tlen <= MAC) {
        fprintf(stderr, "flood: template of %zu bytes\n", tlen);
        return 2;
    }
    int ndest = argc - 5;
    struct sockaddr_in *dest = calloc((size_t)ndest, sizeof *dest);
    for (int i = 0; i < ndest; i++) {
        char host[64];
        const char *colon = strrchr(argv[5 + i], ':');
        size_t hl = colon ? (size_t)(colon - argv[5 + i]) : 0;
        if (!colon || hl >= sizeof host) {
            fprintf(stderr, "flood: bad destination %s\n", argv[5 + i]);
            return 2;
        }
        memcpy(host, argv[5 + i], hl);
        host[hl] = 0;
        dest[i].sin_family = AF_INET;
        dest[i].sin_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET, host, &dest[i].sin_addr) != 1) {
            fprintf(stderr, "flood: bad address %s\n", host);
            return 2;
        }
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ip_mreqn mr = {.imr_ifindex = (int)if_nametoindex("eth0")};
    int ttl = 1, loop = 0, sndbuf = 4 << 20;
    if (s < 0 || setsockopt(s, IPPROTO_IP, IP_MULTICAST_IF, &mr, sizeof mr) ||
        setsockopt(s, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl) ||
        setsockopt(s, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop)) {
        perror("flood: socket");
        return 2;
    }
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    rng ^= (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL;

    static unsigned char buf[BATCH][MAXLEN];
    static struct mmsghdr msgs[BATCH];
    static struct iovec iov[BATCH];
    unsigned long long sent = 0, errors = 0, k = 0;
    double t0 = now(), end = t0 + secs;
    for (double t = t0; t < end; t = now()) {
        double due = (t - t0) * rate, done = (double)(sent + errors);
        if (done >= due) {
            double wait = (done - due + 1) / rate;
            struct timespec ts = {0, (long)(1e9 * (wait < 0.001 ? wait : 0.001))};
            nanosleep(&ts, NULL);
            continue;
        }
        int n = due - done >= BATCH ? BATCH : (int)(due - done) + 1;
        for (int i = 0; i < n; i++, k++) {
            int rais = want_rais || (mixed && (k / (unsigned)ndest) % 2);
            size_t len = rais ? tlen : 16 + next() % 497;
            if (rais) {
                memcpy(buf[i], tmpl, tlen - MAC);
                fill(buf[i] + tlen - MAC, MAC);
            } else {
                fill(buf[i], len);
            }
            iov[i].iov_base = buf[i];
            iov[i].iov_len = len;
            memset(&msgs[i], 0, sizeof msgs[i]);
            msgs[i].msg_hdr.msg_name = &dest[k % (unsigned)ndest];
            msgs[i].msg_hdr.msg_namelen = sizeof dest[0];
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int r = sendmmsg(s, msgs, (unsigned)n, 0);
        if (r < 0) {
            errors += (unsigned)n;
        } else {
            sent += (unsigned)r;
            errors += (unsigned)(n - r);
        }
    }
    printf("sent %llu errors %llu seconds %.3f\n", sent, errors, now() - t0);
    return 0;
}
