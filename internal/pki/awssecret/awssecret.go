// Package awssecret keeps the cluster CA (pki.Store) in an AWS Secrets
// Manager secret, so that every instance of an Auto Scaling group finds the
// same CA and the first one to start creates it.
//
// Create-if-absent is CreateSecret: Secrets Manager creates a name once, and
// a second CreateSecret of the name fails with ResourceExistsException, on
// which the loser reads the winner's value (GetSecretValue). The SDK fills
// CreateSecret's ClientRequestToken once per call and keeps it across its
// retries, so a retry of a create whose answer was lost succeeds as the
// same create instead of losing to itself.
//
// Replace (a CA rotation's step) is a compare-and-swap: the new value is
// put as a version without the AWSCURRENT label, which UpdateSecretVersionStage
// then moves to it from the version that was read — a move Secrets Manager
// refuses when AWSCURRENT is no longer there, that is when another Replace
// came in between.
//
// IAM: secretsmanager:CreateSecret, GetSecretValue, and PutSecretValue and
// UpdateSecretVersionStage (rotation) on the secret's ARN (its name followed by a random suffix:
// arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-??????).
package awssecret

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-appliance/etcd-appliance/internal/awsconf"
	"github.com/etcd-appliance/etcd-appliance/internal/pki"
)

// readBackTimeout bounds how long a loser of CreateSecret keeps asking for
// the winner's value: Secrets Manager is eventually consistent, and a secret
// just created may not be readable everywhere at once.
const readBackTimeout = 30 * time.Second

// API is the part of the Secrets Manager client a Store uses.
type API interface {
	CreateSecret(ctx context.Context, in *secretsmanager.CreateSecretInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error)
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
	UpdateSecretVersionStage(ctx context.Context, in *secretsmanager.UpdateSecretVersionStageInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error)
}

var _ API = (*secretsmanager.Client)(nil)

// Options configure Open. Name is required.
type Options struct {
	// Name is the secret's name (or ARN, for reading an existing one).
	Name string
	// KMSKeyID encrypts a secret this store creates; default: the
	// account's aws/secretsmanager key.
	KMSKeyID string
	// Region, Endpoint, IMDSEndpoint and Registerer: as for every AWS
	// client of the appliance (internal/awsconf).
	Region       string
	Endpoint     string
	IMDSEndpoint string
	Registerer   prometheus.Registerer
}

// Store is a pki.Store in one Secrets Manager secret, whose SecretString is
// the CA's stored form (pki.ClusterCA.MarshalPEM).
type Store struct {
	api      API
	name     string
	kmsKeyID string
	// readBackInterval is the pause between two reads of a winner's value.
	readBackInterval time.Duration
}

var _ pki.Store = (*Store)(nil)

// Open is a Store on the secret opts.Name, with the appliance's AWS
// configuration (retries, per-call timeout, request metrics).
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Name == "" {
		return nil, errors.New("the CA secret needs a name")
	}
	m, err := awsconf.NewMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("CA secret %q: %w", opts.Name, err)
	}
	cfg, err := awsconf.Load(ctx, awsconf.Options{
		Region:   opts.Region,
		Endpoint: opts.Endpoint,
		IMDS:     awsconf.NewIMDS(opts.IMDSEndpoint),
		Metrics:  m,
	})
	if err != nil {
		return nil, fmt.Errorf("CA secret %q: %w", opts.Name, err)
	}
	s := New(secretsmanager.NewFromConfig(cfg), opts.Name)
	s.kmsKeyID = opts.KMSKeyID
	return s, nil
}

// New is a Store on the secret name through api.
func New(api API, name string) *Store {
	return &Store{api: api, name: name, readBackInterval: 500 * time.Millisecond}
}

// Load is the secret's current value, or pki.ErrNoCA when there is no
// such secret.
func (s *Store) Load(ctx context.Context) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, awsconf.CallTimeout)
	defer cancel()
	out, err := s.api.GetSecretValue(cctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(s.name), VersionStage: aws.String(currentStage)})
	if err != nil {
		var notFound *types.ResourceNotFoundException
		if errors.As(err, &notFound) {
			return nil, fmt.Errorf("%w: no secret %q", pki.ErrNoCA, s.name)
		}
		var invalid *types.InvalidRequestException
		if errors.As(err, &invalid) {
			// The one InvalidRequest of a plain GetSecretValue: the secret
			// is scheduled for deletion.
			return nil, fmt.Errorf("reading the CA secret %q: %w (a secret scheduled for deletion: restore it with "+
				"`aws secretsmanager restore-secret --secret-id %s`, or delete it for good and let the cluster create a new CA)",
				s.name, err, s.name)
		}
		return nil, fmt.Errorf("reading the CA secret %q: %w", s.name, err)
	}
	if out.SecretString == nil {
		return nil, fmt.Errorf("%w: the secret %q has no string value", pki.ErrBadCA, s.name)
	}
	return []byte(*out.SecretString), nil
}

// CreateIfAbsent creates the secret with material; when it exists, it
// returns its value instead (the winner's), read until it is readable or
// readBackTimeout passes.
func (s *Store) CreateIfAbsent(ctx context.Context, material []byte) ([]byte, bool, error) {
	cctx, cancel := context.WithTimeout(ctx, awsconf.CallTimeout)
	in := &secretsmanager.CreateSecretInput{
		Name:         aws.String(s.name),
		SecretString: aws.String(string(material)),
		Description:  aws.String("etcd-appliance cluster CA: certificate and private key (PEM)"),
	}
	if s.kmsKeyID != "" {
		in.KmsKeyId = aws.String(s.kmsKeyID)
	}
	_, err := s.api.CreateSecret(cctx, in)
	cancel()
	if err == nil {
		return material, true, nil
	}
	var exists *types.ResourceExistsException
	if !errors.As(err, &exists) {
		return nil, false, fmt.Errorf("creating the CA secret %q: %w", s.name, err)
	}
	stored, err := s.readBack(ctx)
	if err != nil {
		return nil, false, err
	}
	return stored, false, nil
}

// readBack reads the secret another creator made: not found yet is asked
// again, anything else is an error.
func (s *Store) readBack(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, readBackTimeout)
	defer cancel()
	for {
		data, err := s.Load(ctx)
		if err == nil || !errors.Is(err, pki.ErrNoCA) {
			return data, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the CA secret %q exists but cannot be read: %w", s.name, err)
		case <-time.After(s.readBackInterval):
		}
	}
}

// pendingStage labels a value Replace put and has not made current yet;
// currentStage is the label of the secret's value. Reads name it, although
// it is Secrets Manager's default: moto 5.2's GetSecretValue without a
// stage returns the version last put as current, not the one
// UpdateSecretVersionStage moved AWSCURRENT to.
const (
	pendingStage = "etcd-appliance-pending"
	currentStage = "AWSCURRENT"
)

// Replace makes material the secret's current value when the current one
// is still previous, and fails with pki.ErrCAChanged otherwise: the value
// read is compared, the new one put as a pending version, and AWSCURRENT
// moved to it only from the version read (UpdateSecretVersionStage's
// RemoveFromVersionId), which fails when another Replace moved it since.
func (s *Store) Replace(ctx context.Context, previous, material []byte) error {
	cctx, cancel := context.WithTimeout(ctx, awsconf.CallTimeout)
	got, err := s.api.GetSecretValue(cctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(s.name), VersionStage: aws.String(currentStage)})
	cancel()
	if err != nil {
		return fmt.Errorf("reading the CA secret %q: %w", s.name, err)
	}
	if aws.ToString(got.SecretString) != string(previous) {
		return fmt.Errorf("%w (secret %q)", pki.ErrCAChanged, s.name)
	}
	cctx, cancel = context.WithTimeout(ctx, awsconf.CallTimeout)
	put, err := s.api.PutSecretValue(cctx, &secretsmanager.PutSecretValueInput{
		SecretId:      aws.String(s.name),
		SecretString:  aws.String(string(material)),
		VersionStages: []string{pendingStage},
	})
	cancel()
	if err != nil {
		return fmt.Errorf("replacing the CA secret %q: %w", s.name, err)
	}
	cctx, cancel = context.WithTimeout(ctx, awsconf.CallTimeout)
	defer cancel()
	_, err = s.api.UpdateSecretVersionStage(cctx, &secretsmanager.UpdateSecretVersionStageInput{
		SecretId:            aws.String(s.name),
		VersionStage:        aws.String(currentStage),
		MoveToVersionId:     put.VersionId,
		RemoveFromVersionId: got.VersionId,
	})
	var invalid *types.InvalidParameterException
	switch {
	case errors.As(err, &invalid):
		return fmt.Errorf("%w (secret %q: %v)", pki.ErrCAChanged, s.name, err)
	case err != nil:
		return fmt.Errorf("replacing the CA secret %q: %w", s.name, err)
	}
	return nil
}
