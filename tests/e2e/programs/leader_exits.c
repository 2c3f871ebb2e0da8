/* A process whose main thread has exited while another thread runs: `ps`
 * shows it as Zl, yet it is alive. Before the main thread ends it forks
 * ZOMBIES children that exit at once and are never collected: those are
 * the real zombies, held by the live thread group.
 *
 *   leader_exits ZOMBIES
 *
 * The process forks once first, so that the Zl process sits below the
 * program zombiewatch starts (the parent just sleeps), and prints
 * "ready PID" on stdout when everything is in place.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void *linger(void *arg) {
	(void)arg;
	sleep(60);
	return NULL;
}

int main(int argc, char **argv) {
	int zombies = argc > 1 ? atoi(argv[1]) : 5;
	pid_t group = fork();
	if (group < 0)
		return 1;
	if (group > 0) {
		pause(); /* the parent: stopped with its tree at the end */
		return 0;
	}
	for (int i = 0; i < zombies; i++) {
		pid_t child = fork();
		if (child == 0)
			_exit(0);
	}
	pthread_t thread;
	if (pthread_create(&thread, NULL, linger, NULL) != 0)
		return 1;
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	pthread_exit(NULL); /* the main thread ends; the group lives on */
}
