/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "policy.h"
#include "util.h"
#include "wire.h"

void config_defaults(struct config *c) {
        memset(c, 0, sizeof(*c));
        strcpy_bounded(c->socket, sizeof(c->socket), COFFER_DEFAULT_SOCKET);
        strcpy_bounded(c->state_dir, sizeof(c->state_dir), COFFER_DEFAULT_STATE_DIR);
        strcpy_bounded(c->policy_dir, sizeof(c->policy_dir), COFFER_DEFAULT_POLICY_DIR);
        c->max_connections = 4096;
        c->max_connections_per_uid = 512;
        c->root_reserved_connections = 64;
        c->max_buffered_per_uid_mib = 16;
        c->max_buffered_mib = 512;
        strcpy_bounded(c->subuid_file, sizeof(c->subuid_file), "/etc/subuid");
        c->idle_timeout_sec = 60;
        strcpy_bounded(c->login_map, sizeof(c->login_map), COFFER_DEFAULT_LOGIN_MAP);
        strcpy_bounded(c->creds_map, sizeof(c->creds_map), COFFER_DEFAULT_CREDS_MAP);
        c->session_ttl_sec = 24 * 3600;
        c->token_ttl_sec = 3600;
        c->token_max_ttl_sec = 24 * 3600;
        c->max_leases_per_uid = 10000;
        c->session_check_sec = 30;
        c->publish_interval_sec = 15 * 60;
        c->audit_verify_max_mb = 4096;
        c->audit_rate_per_uid = 50;
        c->audit_burst = 500;
        c->audit_warn_free_mb = 1024;
        c->audit_reserve_mb = 256;
}

static int check_stat(const struct stat *stp, const char *path, uid_t uid, char *err, size_t errsz);

int check_owner_mode_fd(int fd, const char *path, uid_t uid, char *err, size_t errsz) {
        struct stat st;
        if (fstat(fd, &st) < 0) {
                snprintf(err, errsz, "%s: %s", path, strerror(errno));
                return -errno;
        }
        return check_stat(&st, path, uid, err, errsz);
}

int check_owner_mode(const char *path, uid_t uid, char *err, size_t errsz) {
        struct stat st;
        if (lstat(path, &st) < 0) {
                snprintf(err, errsz, "%s: %s", path, strerror(errno));
                return -errno;
        }
        return check_stat(&st, path, uid, err, errsz);
}

static int check_stat(const struct stat *stp, const char *path, uid_t uid, char *err, size_t errsz) {
        struct stat st = *stp;
        if (st.st_uid != 0 && st.st_uid != uid) {
                snprintf(err, errsz, "%s is owned by uid %u; it must be owned by root or uid %u", path,
                         (unsigned) st.st_uid, (unsigned) uid);
                return -EPERM;
        }
        if (st.st_mode & (S_IWGRP | S_IWOTH)) {
                snprintf(err, errsz, "%s is writable by group or others (mode %04o); run chmod go-w %s", path,
                         (unsigned) (st.st_mode & 07777), path);
                return -EPERM;
        }
        return 0;
}

static int set_string(char *dst, size_t n, const char *v) {
        return strcpy_bounded(dst, n, v) && v[0] ? 0 : -EINVAL;
}

static int set_uint(unsigned *dst, const char *v, uint64_t min, uint64_t max) {
        uint64_t x;
        int rc = parse_u64(v, min, max, &x);
        if (rc == 0)
                *dst = (unsigned) x;
        return rc;
}

static int set_duration(unsigned *dst, const char *v) {
        uint64_t x;
        int rc = parse_duration_sec(v, &x);
        if (rc < 0 || x == 0 || x > 366u * 86400u)
                return -EINVAL;
        *dst = (unsigned) x;
        return 0;
}

/* Blank-separated unit globs ("none" or empty: none), each one valid for the
 * policy's glob engine and naming a .service or .scope. */
static int set_unit_globs(char *dst, size_t n, const char *v) {
        char buf[1024], *save = NULL;
        if (!strcpy_bounded(buf, sizeof(buf), v))
                return -EINVAL;
        if (strcmp(v, "none") == 0) {
                dst[0] = 0;
                return 0;
        }
        for (char *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
                size_t k = strlen(t);
                if (!policy_glob_valid(t) || strchr(t, '/') ||
                    !((k > 8 && strcmp(t + k - 8, ".service") == 0) || (k > 6 && strcmp(t + k - 6, ".scope") == 0)))
                        return -EINVAL;
        }
        return strcpy_bounded(dst, n, v) ? 0 : -EINVAL;
}

static int set_bool(bool *dst, const char *v) {
        if (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0)
                return -EINVAL;
        *dst = strcmp(v, "yes") == 0;
        return 0;
}

static int apply(struct config *c, const char *k, const char *v) {
        if (strcmp(k, "socket") == 0)
                return set_string(c->socket, sizeof(c->socket), v);
        if (strcmp(k, "state_dir") == 0)
                return set_string(c->state_dir, sizeof(c->state_dir), v);
        if (strcmp(k, "audit_log") == 0)
                return set_string(c->audit_log, sizeof(c->audit_log), v);
        if (strcmp(k, "policy_dir") == 0)
                return set_string(c->policy_dir, sizeof(c->policy_dir), v);
        if (strcmp(k, "max_connections") == 0)
                return set_uint(&c->max_connections, v, 1, 1000000);
        if (strcmp(k, "max_connections_per_uid") == 0)
                return set_uint(&c->max_connections_per_uid, v, 1, 1000000);
        if (strcmp(k, "root_reserved_connections") == 0)
                return set_uint(&c->root_reserved_connections, v, 0, 1000000);
        /* At least one largest request and reply, so a lone connection always fits. */
        if (strcmp(k, "max_buffered_per_uid") == 0)
                return set_uint(&c->max_buffered_per_uid_mib, v, 4, 65536);
        if (strcmp(k, "max_buffered") == 0)
                return set_uint(&c->max_buffered_mib, v, 4, 65536);
        if (strcmp(k, "subuid_file") == 0)
                return strcpy_bounded(c->subuid_file, sizeof(c->subuid_file), v) ? 0 : -EINVAL;
        if (strcmp(k, "idle_timeout") == 0)
                return set_uint(&c->idle_timeout_sec, v, 1, 86400);
        if (strcmp(k, "session_dir") == 0)
                return set_string(c->session_dir, sizeof(c->session_dir), v);
        if (strcmp(k, "jwks_path") == 0)
                return set_string(c->jwks_path, sizeof(c->jwks_path), v);
        if (strcmp(k, "revocation_list") == 0)
                return set_string(c->revocation_list, sizeof(c->revocation_list), v);
        if (strcmp(k, "login_map") == 0)
                return strcpy_bounded(c->login_map, sizeof(c->login_map), v) ? 0 : -EINVAL;
        if (strcmp(k, "creds_socket") == 0)
                return set_string(c->creds_socket, sizeof(c->creds_socket), v);
        if (strcmp(k, "creds_map") == 0)
                return strcpy_bounded(c->creds_map, sizeof(c->creds_map), v) ? 0 : -EINVAL;
        if (strcmp(k, "creds_containers") == 0)
                return set_unit_globs(c->creds_containers, sizeof(c->creds_containers), v);
        if (strcmp(k, "allow_foreign_namespaces") == 0)
                return set_bool(&c->allow_foreign_namespaces, v);
        if (strcmp(k, "token_issuer") == 0)
                return set_string(c->token_issuer, sizeof(c->token_issuer), v);
        if (strcmp(k, "session_ttl") == 0)
                return set_duration(&c->session_ttl_sec, v);
        if (strcmp(k, "token_ttl") == 0)
                return set_duration(&c->token_ttl_sec, v);
        if (strcmp(k, "token_max_ttl") == 0)
                return set_duration(&c->token_max_ttl_sec, v);
        if (strcmp(k, "max_leases_per_uid") == 0)
                return set_uint(&c->max_leases_per_uid, v, 0, 100000000);
        if (strcmp(k, "publish_interval") == 0)
                return set_duration(&c->publish_interval_sec, v);
        if (strcmp(k, "audit_verify_max_mb") == 0)
                return set_uint(&c->audit_verify_max_mb, v, 1, 1u << 24);
        if (strcmp(k, "audit_rate_per_uid") == 0)
                return set_uint(&c->audit_rate_per_uid, v, 0, 1000000);
        if (strcmp(k, "audit_burst") == 0)
                return set_uint(&c->audit_burst, v, 1, 1000000);
        if (strcmp(k, "audit_warn_free_mb") == 0)
                return set_uint(&c->audit_warn_free_mb, v, 0, 1u << 30);
        if (strcmp(k, "audit_reserve_mb") == 0)
                return set_uint(&c->audit_reserve_mb, v, 0, 1u << 30);
        if (strcmp(k, "session_check_interval") == 0)
                return strcmp(v, "0") == 0 ? (c->session_check_sec = 0, 0) : set_duration(&c->session_check_sec, v);
        return -ENOENT;
}

static char *trim(char *s) {
        while (*s == ' ' || *s == '\t')
                s++;
        size_t n = strlen(s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
                s[--n] = 0;
        return s;
}

static int parse_line(struct config *c, char *line, const char *path, unsigned lineno, char *err, size_t errsz) {
        char *s = trim(line);
        if (!*s || *s == '#')
                return 0;
        char *eq = strchr(s, '=');
        if (!eq) {
                snprintf(err, errsz, "%s:%u: expected 'key = value'", path, lineno);
                return -EINVAL;
        }
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        int rc = apply(c, k, v);
        if (rc == -ENOENT)
                snprintf(err, errsz, "%s:%u: unknown key '%s'", path, lineno, k);
        else if (rc < 0)
                snprintf(err, errsz, "%s:%u: invalid value for '%s'", path, lineno, k);
        return rc < 0 ? -EINVAL : 0;
}

int config_load(struct config *c, const char *path, bool required, char *err, size_t errsz) {
        _cleanup_free_ uint8_t *text = NULL;
        size_t len = 0;
        int rc = read_trusted_file(path, geteuid(), &text, &len, err, errsz);

        if (rc == 0 && required)
                snprintf(err, errsz, "%s: %s", path, strerror(ENOENT));
        if (rc <= 0)
                return rc == 0 && required ? -ENOENT : rc;

        struct config tmp = *c;
        unsigned lineno = 0;
        rc = 0;
        for (size_t pos = 0; rc == 0 && pos < len;) {
                const uint8_t *nl = memchr(text + pos, '\n', len - pos);
                size_t ll = nl ? (size_t) (nl - (text + pos)) : len - pos;
                char line[1024];

                lineno++;
                if (ll >= sizeof(line) || memchr(text + pos, 0, ll)) {
                        snprintf(err, errsz, "%s:%u: %s", path, lineno,
                                 ll >= sizeof(line) ? "line too long" : "NUL byte in line");
                        return -EINVAL;
                }
                memcpy(line, text + pos, ll);
                line[ll] = 0;
                pos += ll + (nl ? 1 : 0);
                rc = parse_line(&tmp, line, path, lineno, err, errsz);
        }
        if (rc == 0)
                *c = tmp;
        return rc;
}

void err_append(char *err, size_t errsz, const char *fmt, ...) {
        size_t used = strnlen(err, errsz);
        if (used + 2 >= errsz)
                return;
        if (used)
                err[used++] = '\n';
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + used, errsz - used, fmt, ap);
        va_end(ap);
}

int read_trusted_file(const char *path, uid_t self, uint8_t **text, size_t *len, char *err, size_t errsz) {
        struct stat st;
        int rc = read_settled_file_at(AT_FDCWD, path, 1u << 20, &st, text, len);

        if (rc == -ENOENT)
                return 0;
        if (rc == -EAGAIN)
                snprintf(err, errsz, "%s kept changing while it was read; write it to a temporary file and "
                                     "rename that into place, then reload", path);
        else if (rc == -EINVAL)
                snprintf(err, errsz, "%s is not a regular file", path);
        else if (rc < 0)
                snprintf(err, errsz, "%s: %s", path, strerror(-rc));
        if (rc == 0 && (rc = check_stat(&st, path, self, err, errsz)) < 0) {
                sodium_memzero(*text, *len);
                free(*text);
                *text = NULL;
                *len = 0;
        }
        return rc < 0 ? rc : 1;
}

int parse_word_lines(const char *name, const char *text, size_t len, size_t maxw, line_fn fn, void *ud, char *err,
                     size_t errsz) {
        int rc = 0;
        unsigned lineno = 0;
        if (err && errsz)
                err[0] = 0;
        for (size_t pos = 0; pos < len;) {
                const char *start = text + pos, *nl = memchr(start, '\n', len - pos);
                size_t ll = nl ? (size_t) (nl - start) : len - pos;
                char line[1024], why[256] = "", *w[16], *save = NULL;
                size_t n = 0;
                lineno++;
                pos += ll + (nl ? 1 : 0);
                if (ll >= sizeof(line) || memchr(start, 0, ll)) {
                        err_append(err, errsz, "%s:%u: %s", name, lineno,
                                   ll >= sizeof(line) ? "line too long" : "NUL byte in line");
                        rc = -EINVAL;
                        continue;
                }
                memcpy(line, start, ll);
                line[ll] = 0;
                char *hash = strchr(line, '#');
                if (hash)
                        *hash = 0;
                if (!utf8_is_valid((const uint8_t *) line, strlen(line))) {
                        err_append(err, errsz, "%s:%u: not UTF-8", name, lineno);
                        rc = -EINVAL;
                        continue;
                }
                for (char *t = strtok_r(line, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
                        if (n < maxw && n < ELEMENTSOF(w))
                                w[n] = t;
                        n++;
                }
                if (n > maxw)
                        n = maxw + 1;
                if (n > 0 && fn(ud, w, n, why, sizeof(why)) < 0) {
                        err_append(err, errsz, "%s:%u: %s", name, lineno, why);
                        rc = -EINVAL;
                }
        }
        return rc;
}

int parse_word_file(const char *path, uid_t self, size_t maxw, line_fn fn, void *ud, char *err, size_t errsz) {
        uint8_t *text = NULL;
        size_t len = 0;
        if (!path[0])
                return 0;
        int rc = read_trusted_file(path, self, &text, &len, err, errsz);
        if (rc <= 0)
                return rc;
        rc = parse_word_lines(path, (const char *) text, len, maxw, fn, ud, err, errsz);
        free(text);
        return rc;
}
