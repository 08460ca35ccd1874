/*
 * The pod sandbox's first process (the "pause" container): it holds the pod's namespaces open, reaps
 * the zombies that a shared PID namespace hands to it, and exits cleanly on SIGTERM or SIGINT so that a
 * sandbox stops at once instead of waiting for SIGKILL. Statically linked, so the image is FROM scratch.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signum) {
    (void)signum;
    _exit(0);
}

static void reap(int signum) {
    (void)signum;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static int handle(int signum, void (*handler)(int)) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigemptyset(&action.sa_mask);
    return sigaction(signum, &action, NULL);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("patronus-pause");
        return 0;
    }
    if (handle(SIGINT, stop) || handle(SIGTERM, stop) || handle(SIGCHLD, reap)) {
        perror("pause: sigaction");
        return 1;
    }
    for (;;) {
        pause();
    }
}
