package awssecret_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcd-appliance/etcd-appliance/internal/pki"
	"github.com/etcd-appliance/etcd-appliance/internal/pki/awssecret"
	"github.com/etcd-appliance/etcd-appliance/internal/testcluster"
)

// The moto-backed tests need moto_server: see testcluster.MotoForTest.
//
// moto gap, written down: moto 5.2's CreateSecret checks for the name and
// then adds the secret without a lock (moto/secretsmanager/models.py,
// create_secret → _check_with_existing_secrets_and_versions → _add_secret),
// so two creates of one name interleaved inside that window could both
// succeed there, the second as a new version. Secrets Manager itself
// creates a name once. The window is a few Python statements under the
// GIL; the race test below has not been seen to hit it.

const motoRegion = "us-east-1"

func startMoto(t *testing.T) *testcluster.Moto {
	t.Helper()
	m := testcluster.MotoForTest(t, "the CA secret tests")
	// After moto started: moto's own botocore chokes on an empty AWS_PROFILE.
	testcluster.IsolateAWSEnv(t)
	return m
}

// rawSecrets is the test's own client, to look behind the store's back.
func rawSecrets(endpoint string) *secretsmanager.Client {
	return secretsmanager.New(secretsmanager.Options{
		Region:       motoRegion,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: sdkaws.String(endpoint),
	})
}

func open(t *testing.T, moto *testcluster.Moto, name string, reg prometheus.Registerer) *awssecret.Store {
	t.Helper()
	s, err := awssecret.Open(context.Background(), awssecret.Options{Name: name, Region: motoRegion, Endpoint: moto.URL, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func generate() (*pki.ClusterCA, error) {
	return pki.NewClusterCA("cluster-ca", time.Now(), pki.DefaultCALifetime)
}

// What the store relies on, seen in moto: a second CreateSecret of a name
// fails with ResourceExistsException and leaves the first value; a secret
// scheduled for deletion answers GetSecretValue with InvalidRequest.
func TestMotoSecretsManagerSemantics(t *testing.T) {
	moto := startMoto(t)
	raw := rawSecrets(moto.URL)
	ctx := context.Background()
	if _, err := raw.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: sdkaws.String("ca/x"), SecretString: sdkaws.String("one")}); err != nil {
		t.Fatal(err)
	}
	_, err := raw.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: sdkaws.String("ca/x"), SecretString: sdkaws.String("two")})
	var exists *types.ResourceExistsException
	if !errors.As(err, &exists) {
		t.Fatalf("a second CreateSecret: %v, want ResourceExistsException", err)
	}
	out, err := raw.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: sdkaws.String("ca/x")})
	if err != nil || sdkaws.ToString(out.SecretString) != "one" {
		t.Fatalf("after the refused create the value is %q (%v), want the first", sdkaws.ToString(out.SecretString), err)
	}
	_, err = raw.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: sdkaws.String("ca/none")})
	var notFound *types.ResourceNotFoundException
	if !errors.As(err, &notFound) {
		t.Errorf("GetSecretValue of no secret: %v, want ResourceNotFoundException", err)
	}
	if _, err := raw.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: sdkaws.String("ca/x")}); err != nil {
		t.Fatal(err)
	}
	_, err = raw.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: sdkaws.String("ca/x")})
	var invalid *types.InvalidRequestException
	if !errors.As(err, &invalid) {
		t.Errorf("GetSecretValue of a deleted secret: %v, want InvalidRequestException", err)
	}
}

// Two instances starting at once on an empty secret: exactly one creates
// the CA, and both end with the same one. Several rounds, a new secret
// each, to give the race its chances.
func TestEnsureCARaceOnMoto(t *testing.T) {
	moto := startMoto(t)
	reg := prometheus.NewRegistry()
	for round := range 5 {
		name := fmt.Sprintf("etcd-appliance/orders/ca-%d", round)
		stores := []*awssecret.Store{open(t, moto, name, reg), open(t, moto, name, reg)}
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			cas     = make([]*pki.ClusterCA, len(stores))
			created = make([]bool, len(stores))
			errs    = make([]error, len(stores))
		)
		for i, s := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				cas[i], created[i], errs[i] = pki.EnsureCA(context.Background(), s, generate, nil)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, instance %d: %v", round, i, err)
			}
		}
		if created[0] == created[1] {
			t.Errorf("round %d: created = %v, want exactly one creator", round, created)
		}
		a, _ := cas[0].MarshalPEM()
		b, _ := cas[1].MarshalPEM()
		if !bytes.Equal(a, b) {
			t.Errorf("round %d: the instances ended with different CAs (serials %x and %x)", round,
				cas[0].Signer.Cert.SerialNumber, cas[1].Signer.Cert.SerialNumber)
		}
		// And that is what the secret holds.
		out, err := rawSecrets(moto.URL).GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: sdkaws.String(name)})
		if err != nil || sdkaws.ToString(out.SecretString) != string(a) {
			t.Errorf("round %d: the secret does not hold the CA both use (%v)", round, err)
		}
	}
	// Some of the rounds may have been won outright by the first instance,
	// before the second asked; whoever lost a create read the winner's.
	t.Logf("CreateSecret refused with ResourceExistsException %v times in 5 rounds",
		testcluster.AWSRequests(t, reg, "CreateSecret", "ResourceExistsException"))
}

// The store's own contract on moto: Load of nothing is ErrNoCA; a later
// create returns the stored value, not its own; Replace changes it; a
// deleted secret is an error that says how to restore it, never a new CA;
// a secret that is no CA is ErrBadCA.
func TestStoreOnMoto(t *testing.T) {
	moto := startMoto(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	s := open(t, moto, "etcd-appliance/ca", reg)
	if _, err := s.Load(ctx); !errors.Is(err, pki.ErrNoCA) {
		t.Fatalf("Load of no secret: %v, want ErrNoCA", err)
	}
	first, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	firstPEM, _ := first.MarshalPEM()
	stored, created, err := s.CreateIfAbsent(ctx, firstPEM)
	if err != nil || !created || !bytes.Equal(stored, firstPEM) {
		t.Fatalf("first CreateIfAbsent: created %v, %v", created, err)
	}
	second, _ := generate()
	secondPEM, _ := second.MarshalPEM()
	stored, created, err = s.CreateIfAbsent(ctx, secondPEM)
	if err != nil || created || !bytes.Equal(stored, firstPEM) {
		t.Fatalf("second CreateIfAbsent: created %v, same as the first %v, %v; want the first's value", created, bytes.Equal(stored, firstPEM), err)
	}
	if n := testcluster.AWSRequests(t, reg, "CreateSecret", "ResourceExistsException"); n != 1 {
		t.Errorf("CreateSecret refusals counted: %v, want 1", n)
	}

	next, _ := pki.NewAuthority("cluster-ca-2", time.Now(), pki.DefaultCALifetime)
	introducedPEM, _ := first.Introduce(next).MarshalPEM()
	if err := s.Replace(ctx, firstPEM, introducedPEM); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(ctx, firstPEM, secondPEM); !errors.Is(err, pki.ErrCAChanged) {
		t.Errorf("Replace decided on the value before the last Replace: %v, want ErrCAChanged", err)
	}
	ca, created, err := pki.EnsureCA(ctx, s, generate, nil)
	if err != nil || created || ca.Next == nil || !ca.Next.Cert.Equal(next.Cert) {
		t.Fatalf("EnsureCA after Replace: created %v, next %v, %v; want the introduced CA", created, ca.LogValue(), err)
	}

	raw := rawSecrets(moto.URL)
	// Through the store, not raw.PutSecretValue: moto 5.2 keeps the version
	// GetSecretValue returns by default apart from the AWSCURRENT label
	// that UpdateSecretVersionStage moved (Replace), and a plain put then
	// leaves two versions labelled AWSCURRENT. Secrets Manager keeps one.
	if err := s.Replace(ctx, introducedPEM, []byte("hunter2")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.EnsureCA(ctx, s, generate, nil); !errors.Is(err, pki.ErrBadCA) {
		t.Errorf("EnsureCA on a secret that is no CA: %v, want ErrBadCA", err)
	}

	if _, err := raw.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: sdkaws.String("etcd-appliance/ca")}); err != nil {
		t.Fatal(err)
	}
	_, _, err = pki.EnsureCA(ctx, s, func() (*pki.ClusterCA, error) {
		t.Error("generated a CA while the stored one is scheduled for deletion")
		return generate()
	}, nil)
	if err == nil || errors.Is(err, pki.ErrNoCA) || !strings.Contains(err.Error(), "restore-secret") {
		t.Errorf("EnsureCA on a deleted secret: %v, want an error naming restore-secret", err)
	}
}

// interleaved is the real client with another operator's Replace run right
// after each read of the secret: the race the compare-and-swap must lose
// to.
type interleaved struct {
	awssecret.API
	between func()
}

func (i *interleaved) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	out, err := i.API.GetSecretValue(ctx, in, opts...)
	if f := i.between; f != nil {
		i.between = nil
		f()
	}
	return out, err
}

// TestReplaceLosesARaceOnMoto: two operators decide on the same stored CA;
// the one whose Replace reads before the other's completes and writes after
// it fails with ErrCAChanged, and the other's value stays current.
func TestReplaceLosesARaceOnMoto(t *testing.T) {
	moto := startMoto(t)
	ctx := context.Background()
	raw := rawSecrets(moto.URL)
	const name = "etcd-appliance/race"
	base, _ := generate()
	basePEM, _ := base.MarshalPEM()
	winner, loser := awssecret.New(raw, name), &interleaved{API: raw}
	if _, created, err := winner.CreateIfAbsent(ctx, basePEM); err != nil || !created {
		t.Fatalf("CreateIfAbsent: created %v, %v", created, err)
	}
	a, _ := pki.NewAuthority("a", time.Now(), time.Hour)
	b, _ := pki.NewAuthority("b", time.Now(), time.Hour)
	aPEM, _ := base.Introduce(a).MarshalPEM()
	bPEM, _ := base.Introduce(b).MarshalPEM()
	loser.between = func() {
		if err := winner.Replace(ctx, basePEM, aPEM); err != nil {
			t.Errorf("the winner's Replace: %v", err)
		}
	}
	if err := awssecret.New(loser, name).Replace(ctx, basePEM, bPEM); !errors.Is(err, pki.ErrCAChanged) {
		t.Errorf("the loser's Replace: %v, want ErrCAChanged", err)
	}
	stored, err := winner.Load(ctx)
	if err != nil || !bytes.Equal(stored, aPEM) {
		t.Errorf("stored after the race: the winner's %v (%v)", bytes.Equal(stored, aPEM), err)
	}
}
