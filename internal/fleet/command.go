package fleet

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
)

// Command runs a one-shot subcommand of the appliance (backup, restore, …)
// as an operator would on the instance (in its namespace, if any): with the flags the instance's
// daemon runs with, then extra. It returns stdout, stderr and the exit code;
// err is set only when the command could not be run at all.
func (g *Group) Command(ctx context.Context, id, subcommand string, extra ...string) (stdout, stderr []byte, code int, err error) {
	inst, err := g.lookup(id)
	if err != nil {
		return nil, nil, 0, err
	}
	args := []string{subcommand,
		"--provider", "local",
		"--instance-id", inst.ID,
		"--group-file", g.file,
		"--data-dir", inst.DataDir,
		"--log-format", "text",
	}
	args = append(args, g.tls.args()...)
	args = append(append(args, g.opts.Args...), extra...)
	binary, args := g.argv(inst, args)
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return out.Bytes(), errOut.Bytes(), exit.ExitCode(), nil
	}
	return out.Bytes(), errOut.Bytes(), 0, err
}
