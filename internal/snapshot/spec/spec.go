// Package spec is what the operator says about snapshots: where they are
// stored (--store) and which of them are kept (--retain-*). It parses and
// validates both with the standard library only, so that internal/config
// checks the flags without linking the stores' clients (the AWS SDK);
// internal/snapshot acts on them.
package spec
