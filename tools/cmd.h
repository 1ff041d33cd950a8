/* cmd.h — the `kiln` subcommands; each lives in tools/cmd_<name>.c and
 * returns the process exit status (0 ok, 1 failure, 2 usage error). */
#ifndef KILN_TOOLS_CMD_H
#define KILN_TOOLS_CMD_H

int kiln_cmd_inspect(int argc, char **argv);
int kiln_cmd_run(int argc, char **argv);
int kiln_cmd_bench(int argc, char **argv);
int kiln_cmd_test_onnx(int argc, char **argv);
int kiln_cmd_compile(int argc, char **argv);
int kiln_cmd_compare(int argc, char **argv);
int kiln_cmd_serve(int argc, char **argv);
int kiln_cmd_perf(int argc, char **argv);
int kiln_cmd_top(int argc, char **argv);

#endif
