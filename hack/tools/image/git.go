package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// gitRevision is the commit of HEAD in dir, with "-dirty" when the tree has
// changes, untracked files included: an image built from such a tree must not
// claim to be the clean commit.
func gitRevision(ctx context.Context, dir string) (string, error) {
	head, err := git(ctx, dir, "rev-parse", "--verify", "HEAD")
	if err != nil {
		return "", err
	}
	status, err := git(ctx, dir, "status", "--porcelain", "--untracked-files=normal")
	if err != nil {
		return "", err
	}
	if status != "" {
		head += "-dirty"
	}
	return head, nil
}

// gitCommitTime is the committer time of HEAD in dir, in Unix seconds.
func gitCommitTime(ctx context.Context, dir string) (int64, error) {
	out, err := git(ctx, dir, "log", "-1", "--format=%ct", "HEAD")
	if err != nil {
		return 0, err
	}
	t, err := strconv.ParseInt(out, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("image build: commit time %q of HEAD in %s is not a number: %w", out, dir, err)
	}
	return t, nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("image build: git %s in %s: %s: run it in a git checkout, or pass -revision and -epoch (or SOURCE_DATE_EPOCH)",
			strings.Join(args, " "), dir, msg)
	}
	return strings.TrimSpace(string(out)), nil
}
