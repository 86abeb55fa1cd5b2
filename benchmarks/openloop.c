/* An open-loop HTTP/1.1 load generator for benchmarks/range_density.py (wrk2 is not packaged in Debian).
 *
 * Request i is due at start + i / rate, whatever happened to the requests before it. It goes out on an idle
 * keep-alive connection as soon as it is due, or waits in a queue for the next connection to free up; its
 * latency is measured from when it was DUE, not from when it went out, so a server that stalls is charged
 * for every request that queued behind the stall (no coordinated omission).
 *
 *   openloop HOST PORT RATE SECONDS CONNECTIONS WARMUP PATHS_FILE HEADER_LINES [BODIES_FILE]
 *
 * PATHS_FILE: one request path a line, picked uniformly at random; HEADER_LINES: extra request header lines
 * ("" or e.g. "Accept-Encoding: gzip\r\n"). With BODIES_FILE (one body a line, at most 4 KiB, e.g. pre-built
 * JSON queries), every request is a POST of a body picked uniformly at random, with its Content-Length (give
 * its Content-Type in HEADER_LINES); without it, a GET. Prints one line of key=value pairs: requests due and completed,
 * non-200 answers, requests not answered within 5 s of the end, idle connections the server closed (and
 * were opened again), latency percentiles in ms of the requests
 * due after WARMUP seconds, and this process's own CPU seconds (user + system).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    int busy;
    double due; /* when the request in flight was due */
    size_t have, need; /* bytes of the response read so far; its total (0: headers not complete yet) */
    char *buf;
    size_t cap;
} conn_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static char **paths, **bodies;
static size_t npaths, nbodies;
static const char *host_header, *extra;
static double *lat;
static size_t nlat, completed, bad, sent, reconnects;
static double warm_until;

static int connect_to(const char *host, int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        exit(2);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void send_on(conn_t *c, double due) {
    char req[8192];
    const char *path = paths[random() % npaths];
    int n;
    if (nbodies) {
        const char *body = bodies[random() % nbodies];
        n = snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %zu\r\n\r\n%s", path,
                     host_header, extra, strlen(body), body);
    } else {
        n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", path, host_header, extra);
    }
    if (n < 0 || (size_t)n >= sizeof req) {
        fprintf(stderr, "a request does not fit %zu bytes\n", sizeof req);
        exit(2);
    }
    /* a request is at most a few KiB: it fits the socket buffer of an idle connection in one write */
    if (write(c->fd, req, n) != n) {
        perror("write");
        exit(2);
    }
    c->busy = 1, c->due = due, c->have = 0, c->need = 0;
    sent++;
}

/* Read what is there; return 1 when the response is complete. */
static int read_on(conn_t *c) {
    for (;;) {
        if (c->cap - c->have < 65536) {
            c->cap = c->cap * 2 + 65536;
            c->buf = realloc(c->buf, c->cap);
        }
        ssize_t r = read(c->fd, c->buf + c->have, c->cap - c->have - 1);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (r <= 0) {
            fprintf(stderr, "connection closed by the server\n");
            exit(2);
        }
        c->have += r;
        if (!c->need) {
            c->buf[c->have] = 0;
            char *end = strstr(c->buf, "\r\n\r\n");
            if (!end) continue;
            char *cl = strcasestr(c->buf, "\r\ncontent-length:");
            if (!cl || cl > end) {
                fprintf(stderr, "a response without Content-Length\n");
                exit(2);
            }
            c->need = (end + 4 - c->buf) + strtoul(cl + 17, NULL, 10);
            if (strncmp(c->buf + 9, "200", 3) != 0) bad++;
        }
        if (c->need && c->have >= c->need) return 1;
    }
}

int main(int argc, char **argv) {
    if (argc != 9 && argc != 10) {
        fprintf(stderr,
                "usage: openloop HOST PORT RATE SECONDS CONNECTIONS WARMUP PATHS_FILE HEADER_LINES [BODIES_FILE]\n");
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    double rate = atof(argv[3]), seconds = atof(argv[4]), warmup = atof(argv[6]);
    int nconn = atoi(argv[5]);
    extra = argv[8];
    static char hh[300];
    snprintf(hh, sizeof hh, "%s:%d", host, port);
    host_header = hh;
    FILE *pf = fopen(argv[7], "r");
    if (!pf) {
        perror(argv[7]);
        return 2;
    }
    char line[512];
    size_t capp = 1024;
    paths = malloc(capp * sizeof *paths);
    while (fgets(line, sizeof line, pf)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line) continue;
        if (npaths == capp) paths = realloc(paths, (capp *= 2) * sizeof *paths);
        paths[npaths++] = strdup(line);
    }
    fclose(pf);
    if (!npaths) {
        fprintf(stderr, "%s holds no path\n", argv[7]);
        return 2;
    }
    if (argc == 10) {
        FILE *bf = fopen(argv[9], "r");
        if (!bf) {
            perror(argv[9]);
            return 2;
        }
        static char bline[4098];
        size_t capb = 1024;
        bodies = malloc(capb * sizeof *bodies);
        while (fgets(bline, sizeof bline, bf)) {
            size_t len = strcspn(bline, "\r\n");
            if (len == strlen(bline) && !feof(bf)) {
                fprintf(stderr, "%s: a body longer than 4 KiB\n", argv[9]);
                return 2;
            }
            bline[len] = 0;
            if (!len) continue;
            if (nbodies == capb) bodies = realloc(bodies, (capb *= 2) * sizeof *bodies);
            bodies[nbodies++] = strdup(bline);
        }
        fclose(bf);
        if (!nbodies) {
            fprintf(stderr, "%s holds no body\n", argv[9]);
            return 2;
        }
    }
    srandom(12345);

    size_t total = (size_t)(rate * seconds);
    lat = malloc(total * sizeof *lat);
    double *queue = malloc(total * sizeof *queue); /* due times of requests waiting for a connection */
    size_t qhead = 0, qtail = 0;
    conn_t *conns = calloc(nconn, sizeof *conns);
    int ep = epoll_create1(0);
    for (int i = 0; i < nconn; i++) {
        conns[i].fd = connect_to(host, port);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    /* idle connections in a ring, used oldest first: every connection carries requests regularly, so a
     * server's idle timeout (granian's header timeout) never closes one under a steady load */
    int *idle = malloc(nconn * sizeof *idle), nidle = nconn, ihead = 0;
    for (int i = 0; i < nconn; i++) idle[i] = i;
#define POP_IDLE() (nidle--, idle[(ihead++) % nconn])
#define PUSH_IDLE(i) (idle[(ihead + nidle++) % nconn] = (i))

    double start = now() + 0.05;
    warm_until = start + warmup;
    size_t next = 0; /* the next request to fall due */
    struct epoll_event evs[256];
    double stop_waiting = start + seconds + 5.0;
    for (;;) {
        double t = now();
        while (next < total && start + next / rate <= t) queue[qtail++] = start + (next++) / rate;
        while (qhead < qtail && nidle) send_on(&conns[POP_IDLE()], queue[qhead++]);
        if (next == total && qhead == qtail && nidle == nconn) break;
        if (t > stop_waiting) break;
        /* sleep until the next request falls due (nanosecond timeout: no spinning, no whole-ms steps) */
        double wait_s = next < total ? start + next / rate - t : 0.05;
        if (wait_s < 0) wait_s = 0;
        struct timespec ts = {.tv_sec = (time_t)wait_s, .tv_nsec = (long)((wait_s - (time_t)wait_s) * 1e9)};
        int n = epoll_pwait2(ep, evs, 256, &ts, NULL);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c->busy) { /* the server closed an idle connection: open a new one in its place */
                char probe;
                if (read(c->fd, &probe, 1) == 0) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                    c->fd = connect_to(host, port);
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
                    reconnects++;
                }
                continue;
            }
            if (read_on(c)) {
                double done = now();
                if (c->due >= warm_until) lat[nlat++] = done - c->due;
                completed++;
                c->busy = 0;
                if (qhead < qtail) send_on(c, queue[qhead++]);
                else PUSH_IDLE((int)(c - conns));
            }
        }
    }
    double elapsed = now() - start;
    qsort(lat, nlat, sizeof *lat, cmp);
#define PCT(p) (nlat ? lat[(size_t)((p) / 100.0 * (nlat - 1))] * 1000 : -1.0)
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
    printf("due=%zu completed=%zu non200=%zu unanswered=%zu rate=%.1f p50=%.3f p90=%.3f p99=%.3f p999=%.3f "
           "max=%.3f cpu=%.3f elapsed=%.3f reconnects=%zu\n",
           total, completed, bad, total - completed, completed / elapsed, PCT(50), PCT(90), PCT(99), PCT(99.9),
           nlat ? lat[nlat - 1] * 1000 : -1.0, cpu, elapsed, reconnects);
    return 0;
}
