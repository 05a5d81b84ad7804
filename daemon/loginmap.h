/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The login map: which credentials a login session is offered. Policy then
 * decides, per user, which of them it gets. See pam_coffer(8).
 *
 *   # ENV_VAR             FILE                OBJECT                 [ttl=DURATION]
 *   HF_TOKEN_PATH         hf-token            secret:hf/token
 *   INFERENCE_TOKEN_PATH  inference-api.jwt   token:inference-api    ttl=8h
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LOGIN_MAP_MAX 64
#define LOGIN_FILE_MAX 64

enum login_kind { LOGIN_SECRET = 1, LOGIN_TOKEN = 2 };

struct login_entry {
        char env[64];
        char file[LOGIN_FILE_MAX + 1];
        enum login_kind kind;
        char object[272];          /* secret:NAME or token:AUDIENCE */
        const char *target;        /* points into object, after the colon */
        uint64_t ttl;              /* tokens: seconds, 0 = the default */
};

struct login_map {
        size_t n;
        struct login_entry e[LOGIN_MAP_MAX];
};

/* Parse text (len bytes). Every error is reported, one per line, as
 * "NAME:LINE: what" in err. Returns 0 or -EINVAL. */
int login_map_parse(struct login_map *m, const char *name, const char *text, size_t len, char *err, size_t errsz);
/* Load path: must be owned by root or self and not group/world-writable.
 * A missing file is an empty map. */
int login_map_load(struct login_map *m, const char *path, uid_t self, char *err, size_t errsz);
