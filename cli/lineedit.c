/* lineedit.c: the REPL's terminal side, the Lua module gleam.lineedit
 * (main.c preloads it). loop{feed, continuing, reset, complete, history}
 * reads lines with libedit (emacs keys, history, Tab bound to the
 * completer) and hands each to feed, which evaluates it (lua/gleam/repl.lua).
 *
 * Signals: SIGINT is ours for the whole loop. At the prompt it ends the
 * read (our getc returns -1), the unfinished input is dropped and a fresh
 * prompt shown. While a line is evaluated it sets the int at cancel_flag,
 * which the engine polls between batches (gleam.config.cancel), and sets a
 * Lua hook that raises "interrupted (Ctrl-C)" in driver-side Lua; a
 * second Ctrl-C in the same evaluation leaves the REPL (a worker stuck in
 * one long row does not see the flag). The handler only touches
 * sig_atomic_t and atomic flags, write(2), pthread_kill (a SIGINT a
 * worker thread got is passed to the main thread) and lua_sethook, which
 * is meant to be called from a signal handler (lua.c and luajit.c do). */
#include "engine.h"

#include <lauxlib.h>
#include <lua.h>

#include <errno.h>
#include <histedit.h>
#include <langinfo.h>
#include <locale.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HISTORY_SIZE 1000
#define SHOW_MAX 200 /* completions listed at most */

static atomic_int cancel_flag;           /* the engine reads it (int *) */

/* The engine's progress (gl_engine_set_progress): a job running over a
 * second gets one line on stderr, redrawn in place and cleared when the
 * job ends (p NULL). */
static bool progress_shown;

static void progress(const gl_progress *p)
{
    if (!p) {
        if (progress_shown)
            fputs("\r\033[K", stderr);
        progress_shown = false;
    } else if (p->elapsed >= 1.0) {
        fprintf(stderr, "\r\033[Kstage %u/%u: %u/%u tasks, %llu rows, %.1f s", p->stage, p->stages, p->done,
                p->tasks, (unsigned long long)p->rows, p->elapsed);
        progress_shown = true;
    }
    fflush(stderr);
}
static volatile sig_atomic_t got_sigint; /* at the prompt */
static volatile sig_atomic_t got_winch;
static volatile sig_atomic_t evaluating;
static lua_State *hook_state;            /* the state evaluating, for the hook */
static pthread_t main_thread;

typedef struct repl {
    lua_State *L;
    int opts;         /* stack index of loop's options table */
    EditLine *el;
    History *hist;
    const char *history_path;
} repl;

static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    lua_pushstring(L, "interrupted (Ctrl-C)");
    lua_error(L);
}

static void on_sigint(int sig)
{
    /* Worker threads do not block signals; the main thread acts on it. */
    if (!pthread_equal(pthread_self(), main_thread)) {
        pthread_kill(main_thread, sig);
        return;
    }
    if (!evaluating) {
        got_sigint = 1;
        return;
    }
    if (atomic_load(&cancel_flag)) {
        static const char msg[] = "\ngleam: interrupted twice; leaving the REPL\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(130);
    }
    atomic_store(&cancel_flag, 1);
    /* After the terminal's "^C", so the message starts its own line. */
    ssize_t w = write(STDOUT_FILENO, "\n", 1);
    (void)w;
    if (hook_state)
        lua_sethook(hook_state, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void on_sigwinch(int sig)
{
    (void)sig;
    got_winch = 1;
}

/* libedit's character reader: read(2), but a Ctrl-C ends the line
 * (returning -1 makes el_gets return NULL with count -1). */
static int getc_fn(EditLine *el, wchar_t *out)
{
    char buf[MB_LEN_MAX];
    size_t n = 0;
    mbstate_t mbs;
    for (;;) {
        if (got_sigint) {
            got_sigint = 0;
            errno = EINTR;
            return -1;
        }
        if (got_winch) {
            got_winch = 0;
            el_resize(el);
        }
        ssize_t r = read(STDIN_FILENO, buf + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -1 : 0;
        n++;
        memset(&mbs, 0, sizeof mbs);
        size_t c = mbrtowc(out, buf, n, &mbs);
        if (c == (size_t)-2 && n < sizeof buf)
            continue; /* an unfinished UTF-8 sequence */
        if (c == (size_t)-1 || c == (size_t)-2) {
            n = 0; /* an invalid byte: dropped */
            continue;
        }
        return 1;
    }
}

static repl *the_repl; /* for the prompt and completion callbacks */

/* Calls opts[name](args on the stack); leaves nres results. 0 ok. */
static int call(repl *r, const char *name, int nargs, int nres)
{
    lua_State *L = r->L;
    lua_getfield(L, r->opts, name);
    lua_insert(L, -1 - nargs);
    if (lua_pcall(L, nargs, nres, 0)) {
        fprintf(stderr, "gleam: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

static const char *prompt_fn(EditLine *el)
{
    (void)el;
    int more = 0;
    if (!call(the_repl, "continuing", 0, 1)) {
        more = lua_toboolean(the_repl->L, -1);
        lua_pop(the_repl->L, 1);
    }
    return more ? "  ...> " : "gleam> ";
}

static int is_word(int c) { return c == '_' || c == '.' || c == ':' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z'); }

/* Lists candidates in columns under the line being typed. */
static void show_list(repl *r, int n)
{
    lua_State *L = r->L;
    int cols = 80, w = 0;
    el_get(r->el, EL_GETTC, "co", &cols);
    for (int i = 1; i <= n && i <= SHOW_MAX; i++) {
        lua_rawgeti(L, -1, i);
        int len = (int)lua_objlen(L, -1);
        lua_pop(L, 1);
        if (len > w)
            w = len;
    }
    w += 2;
    int per = cols / w > 0 ? cols / w : 1;
    fputc('\n', stdout);
    for (int i = 1; i <= n && i <= SHOW_MAX; i++) {
        lua_rawgeti(L, -1, i);
        fprintf(stdout, "%-*s", (i % per == 0 || i == n) ? 0 : w, lua_tostring(L, -1));
        lua_pop(L, 1);
        if (i % per == 0 || i == n || i == SHOW_MAX)
            fputc('\n', stdout);
    }
    if (n > SHOW_MAX)
        fprintf(stdout, "... and %d more\n", n - SHOW_MAX);
    fflush(stdout);
}

/* Tab: completes the name before the cursor, or lists the choices. */
static unsigned char complete_fn(EditLine *el, int ch)
{
    (void)ch;
    repl *r = the_repl;
    lua_State *L = r->L;
    const LineInfo *li = el_line(el);
    const char *start = li->cursor;
    while (start > li->buffer && is_word((unsigned char)start[-1]))
        start--;
    size_t len = (size_t)(li->cursor - start);
    lua_pushlstring(L, start, len);
    if (call(r, "complete", 1, 1))
        return CC_REDISPLAY;
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return CC_REFRESH_BEEP;
    }
    int n = (int)lua_objlen(L, -1);
    unsigned char rc = CC_REFRESH;
    if (n == 0) {
        rc = CC_REFRESH_BEEP;
    } else {
        /* The longest prefix all candidates share, past what is typed. */
        lua_rawgeti(L, -1, 1);
        size_t common;
        const char *first = lua_tolstring(L, -1, &common);
        for (int i = 2; i <= n; i++) {
            lua_rawgeti(L, -2, i);
            size_t l;
            const char *s = lua_tolstring(L, -1, &l);
            size_t k = 0;
            while (k < common && k < l && s[k] == first[k])
                k++;
            common = k;
            lua_pop(L, 1);
        }
        if (common > len) {
            char *add = strndup(first + len, common - len);
            if (add) {
                el_insertstr(el, add);
                free(add);
            }
        } else if (n > 1) {
            lua_pop(L, 1);
            show_list(r, n);
            lua_pushnil(L);
            rc = CC_REDISPLAY;
        } else {
            rc = CC_REFRESH_BEEP;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

static void history_add(repl *r, const char *line)
{
    HistEvent ev;
    if (!r->hist || !*line)
        return;
    history(r->hist, &ev, H_ENTER, line);
    /* Saved at each line, so a session that dies keeps what it had. */
    if (r->history_path)
        history(r->hist, &ev, H_SAVE, r->history_path);
}

/* loop(opts): the prompt loop; returns the exit status (0). */
static int l_lineedit_loop(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    repl r = {.L = L, .opts = 1};
    lua_getfield(L, 1, "history");
    r.history_path = lua_tostring(L, -1); /* kept on the stack below */
    main_thread = pthread_self();
    /* The editor reads characters as the user's locale says; in the plain
     * C locale (no LANG) as UTF-8, which terminals send, rather than
     * dropping every non-ASCII byte. Only this thread, and only while
     * editing: evaluation keeps the process's C locale, so Lua's %a and
     * friends match the same bytes here as under gleam run. */
    locale_t loc = newlocale(LC_CTYPE_MASK, "", (locale_t)0);
    if (!loc || !strcmp(nl_langinfo_l(CODESET, loc), "ANSI_X3.4-1968")) {
        if (loc)
            freelocale(loc);
        loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    }
    if (loc)
        uselocale(loc);

    struct sigaction sa, old_int, old_winch;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_sigint; /* no SA_RESTART: read(2) must return */
    sigaction(SIGINT, &sa, &old_int);
    sa.sa_handler = on_sigwinch;
    sigaction(SIGWINCH, &sa, &old_winch);

    r.el = el_init("gleam", stdin, stdout, stderr);
    r.hist = history_init();
    if (r.hist) {
        HistEvent ev;
        history(r.hist, &ev, H_SETSIZE, HISTORY_SIZE);
        history(r.hist, &ev, H_SETUNIQUE, 1);
        if (r.history_path)
            history(r.hist, &ev, H_LOAD, r.history_path);
        el_set(r.el, EL_HIST, history, r.hist);
    }
    the_repl = &r;
    el_set(r.el, EL_EDITOR, "emacs");
    el_set(r.el, EL_SIGNAL, 0);
    el_set(r.el, EL_GETCFN, getc_fn);
    el_set(r.el, EL_PROMPT, prompt_fn);
    /* The wide call: el_set would copy these strings and never free them. */
    el_wset(r.el, EL_ADDFN, L"gleam-complete", L"complete a name, field or method", complete_fn);
    el_set(r.el, EL_BIND, "^I", "gleam-complete", NULL);
    el_source(r.el, NULL); /* the user's ~/.editrc, if any */

    for (;;) {
        int count = 0;
        got_sigint = 0;
        const char *line = el_gets(r.el, &count);
        if (!line && count < 0 && errno == EINTR) {
            /* Ctrl-C at the prompt: a fresh line. */
            fputs("^C\n", stdout);
            fflush(stdout);
            call(&r, "reset", 0, 0);
            continue;
        }
        if (!line) {
            fputc('\n', stdout);
            break;
        }
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        lua_pushlstring(L, line, n);
        history_add(&r, lua_tostring(L, -1));
        atomic_store(&cancel_flag, 0);
        hook_state = L;
        evaluating = 1;
        uselocale(LC_GLOBAL_LOCALE);
        int failed = call(&r, "feed", 1, 1);
        if (loc)
            uselocale(loc);
        evaluating = 0;
        hook_state = NULL;
        lua_sethook(L, NULL, 0, 0);
        atomic_store(&cancel_flag, 0);
        fflush(stdout);
        const char *status = failed ? NULL : lua_tostring(L, -1);
        int leave = status && !strcmp(status, "exit");
        if (!failed)
            lua_pop(L, 1);
        if (leave)
            break;
    }
    the_repl = NULL;
    el_end(r.el);
    if (r.hist)
        history_end(r.hist);
    uselocale(LC_GLOBAL_LOCALE);
    if (loc)
        freelocale(loc);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGWINCH, &old_winch, NULL);
    lua_pushinteger(L, 0);
    return 1;
}

int luaopen_gleam_lineedit(lua_State *L)
{
    lua_newtable(L);
    lua_pushcfunction(L, l_lineedit_loop);
    lua_setfield(L, -2, "loop");
    lua_pushlightuserdata(L, &cancel_flag);
    lua_setfield(L, -2, "cancel_flag");
    lua_pushlightuserdata(L, (void *)progress);
    lua_setfield(L, -2, "progress_fn");
    return 1;
}
