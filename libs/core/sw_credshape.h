/*
 * sw_credshape: obvious credential shapes in text -- the scheduler refuses
 * a run whose input or definition holds one (anti-pattern 3: a secret
 * passed as run input), sandboxd refuses to deliver an artifact holding
 * one. Pure: no I/O, no allocation.
 *
 * Obvious credential shapes, each matched anywhere in a string at a word
 * boundary (the character before, if any, is not a letter
 * or digit):
 *   AWS access key ids    AKIA or ASIA + 16 [A-Z0-9], not followed by [A-Za-z0-9]
 *   GitHub tokens         ghp_ gho_ ghu_ ghs_ ghr_ + >= 36 [A-Za-z0-9];
 *                         github_pat_ + >= 22 [A-Za-z0-9_]
 *   API keys              sk- + >= 20 [A-Za-z0-9_-] (sk-ant-..., sk-proj-...)
 *                         holding a run of >= 16 letters and digits with at
 *                         least one of each: random key material, not a
 *                         hyphenated word list ("sk-learn-is-a-library")
 *   PEM private keys      -----BEGIN [A-Z0-9 ]*PRIVATE KEY-----
 */
#ifndef SW_CREDSHAPE_H
#define SW_CREDSHAPE_H

#include <stddef.h>

/* The kind of the first obvious credential in s[0..len) (may hold NUL
 * bytes) as a phrase ("an AWS access key id", "a GitHub token", "an API
 * key (sk-...)", "a PEM private key"), with *off (if not NULL) its offset;
 * NULL when there is none. */
const char *sw_credshape_find(const void *s, size_t len, size_t *off);

#endif
