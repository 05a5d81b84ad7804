/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A thread per job, joined when the job ends: jobs are rare (an unseal) and
 * each takes a second or more, so a pool would buy nothing. The thread
 * signals an eventfd; the loop joins it and runs the job's done().
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "worker.h"

struct worker {
        sd_event_source *src; /* owns the eventfd */
        int efd;
        pthread_t thread;
        struct work *job;     /* NULL = idle */
};

static void *thread_main(void *arg) {
        struct worker *wk = arg;
        uint64_t one = 1;
        wk->job->run(wk->job);
        /* An eventfd write of 1 cannot fail short of a full counter. */
        (void) !write(wk->efd, &one, sizeof(one));
        return NULL;
}

static void finish(struct worker *wk, bool cancelled) {
        struct work *w = wk->job;
        pthread_join(wk->thread, NULL);
        wk->job = NULL;
        w->done(w, cancelled);
}

static int on_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct worker *wk = userdata;
        uint64_t n;
        (void) s;
        (void) revents;
        if (read(fd, &n, sizeof(n)) == (ssize_t) sizeof(n) && wk->job)
                finish(wk, false);
        return 0;
}

int worker_new(struct worker **out, sd_event *e) {
        struct worker *wk = calloc(1, sizeof(*wk));
        if (!wk)
                return -ENOMEM;
        wk->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        int rc = wk->efd < 0 ? -errno : sd_event_add_io(e, &wk->src, wk->efd, EPOLLIN, on_done, wk);
        if (rc < 0) {
                if (wk->efd >= 0)
                        close(wk->efd);
                free(wk);
                return rc;
        }
        sd_event_source_set_io_fd_own(wk->src, true);
        *out = wk;
        return 0;
}

int worker_submit(struct worker *wk, struct work *w) {
        if (wk->job)
                return -EBUSY;
        wk->job = w;
        /* The thread takes no signal: the loop's signalfd gets them all. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int rc = -pthread_create(&wk->thread, NULL, thread_main, wk);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc < 0)
                wk->job = NULL;
        return rc;
}

void worker_free(struct worker *wk) {
        if (!wk)
                return;
        if (wk->job)
                finish(wk, true);
        sd_event_source_disable_unref(wk->src);
        free(wk);
}

int slice_start(sd_event *e, sd_event_source **s, sd_event_time_handler_t fn, void *ud) {
        return sd_event_add_time_relative(e, s, CLOCK_MONOTONIC, 0, 1, fn, ud);
}

int slice_again(sd_event_source *s) {
        int rc = sd_event_source_set_time_relative(s, 0);
        return rc < 0 ? rc : sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}
