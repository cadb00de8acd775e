#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "isolation/child_steps.hpp"

namespace execd::test {

/// fork + ChildSteps::apply + execve, as process::spawn will do it: the test's stand-in
/// for the spawn path while that is being changed. stdout/stderr go to `output` when
/// given (else inherited). Exits 126 in the child when a step fails.
pid_t start_child(const isolation::ChildSteps& steps, const std::vector<std::string>& argv,
                  const std::vector<std::string>& env, int output_fd = -1);

/// Runs to completion and returns (wait status, everything written to stdout+stderr).
std::pair<int, std::string> run_child(const isolation::ChildSteps& steps, const std::vector<std::string>& argv,
                                      const std::vector<std::string>& env = {"PATH=/usr/bin:/bin"});

/// True while `pid` exists and is not a zombie.
bool is_running(pid_t pid);

}  // namespace execd::test
