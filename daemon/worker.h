/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One job at a time off the event loop: work that takes seconds (Argon2id,
 * checking a million lease MACs) runs on a thread, and its end is handed
 * back to the loop, so other clients are served meanwhile. */
#pragma once

#include <stdbool.h>

#include <systemd/sd-event.h>

struct work {
        /* On the worker thread: touches only what the job owns. */
        void (*run)(struct work *w);
        /* Back on the loop thread, once run has returned; cancelled when
         * the daemon stops (the job must then only free itself). */
        void (*done)(struct work *w, bool cancelled);
};

struct worker;

int worker_new(struct worker **out, sd_event *e);
/* -EBUSY while a job runs. */
int worker_submit(struct worker *wk, struct work *w);
/* Wait for a running job to finish, then hand it to done(cancelled). */
void worker_free(struct worker *wk);

/* Work in slices that take turns with the connections, on the loop: a timer
 * due at once, re-armed by slice_again after each slice (0 = done). An
 * always-on defer source would starve the connections (it stays the oldest
 * pending source); one at idle priority would itself starve under a steady
 * load. */
int slice_start(sd_event *e, sd_event_source **s, sd_event_time_handler_t fn, void *ud);
int slice_again(sd_event_source *s);
