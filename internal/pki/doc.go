// Package pki is the cluster's certificates (SPEC §4.8, issue 11): a cluster
// CA, certificates it issues to members and users, their renewal without
// restarting etcd, the operator's files reloaded on change (--tls files),
// where the CA key is kept (Store: DirStore here, AWS Secrets Manager in
// package awssecret), and the mutual-TLS configs of the appliance API.
//
// The pieces:
//   - ClusterCA: the signing Authority and the Bundle of trusted CAs, in one
//     PEM text (MarshalPEM, ParseClusterCA) that a Store keeps; Introduce,
//     Promote and Retire rotate the CA with an overlap, both CAs trusted
//     meanwhile.
//   - Authority.Issue: an ECDSA P-256 certificate with the caller's name,
//     addresses and lifetime; a Member's serves and is a client (etcd peers
//     use one certificate both ways), a User's is a client only.
//   - Renewer (--tls auto) and FileSource (--tls files): the certificate and
//     bundle in use, as Credentials for ServerTLS and ClientTLS, and, for
//     the Renewer, written to KeyPairFiles for etcd.
//   - EnsureCA: the stored CA, or one created race-free by the first
//     instance.
//   - MemberCommonName and RootUser: the etcd users of --etcd-auth;
//     etcdauth.go says how etcd takes a certificate's CN as its user.
//
// # How etcd takes a renewed certificate (etcd v3.7.3, read in its source)
//
// go.etcd.io/etcd/client/pkg/v3/transport, listener.go: TLSInfo.baseConfig
// (line 368) leaves tls.Config.Certificates empty and sets GetCertificate
// (line 474) and GetClientCertificate (line 493) to closures that call
// tlsutil.NewCert (tlsutil/tlsutil.go:53), which reads --cert-file and then
// --key-file from disk and parses them with tls.X509KeyPair — at every
// handshake, on the client and peer listeners and on the peer transport's
// dials (transport.go:28, ClientConfig). Its own comment (lines 348-367)
// says the certificates are left empty precisely so that every new
// connection reloads, SNI or not. So a certificate file replaced on disk is
// served from the next handshake on, without a restart; connections already
// open keep the certificate they were made with (TLS checks expiry only at
// the handshake). etcd v3.5.36 and v3.6.16 have the same code (their
// listener.go:482/505 and :474/493), so members of an older etcd during a
// rolling upgrade reload the same way.
//
// Two consequences are built in here. The two paths are opened one after
// the other — even when they name one file — so a renewal with a new key
// can be seen half done (old certificate, new key) by a handshake, which
// then fails and is redialled by its peer. Giving etcd one combined file
// (KeyPairFiles with Cert == Key) narrows that to a handshake whose own two
// opens straddle the one rename; RenewerConfig.KeepKey closes it
// (TestRenewalSeenHalfDone measures both). And the trusted CAs are
// not reloaded: ServerConfig (listener.go:529) builds ClientCAs and
// ClientConfig (line 562) builds RootCAs once, from cafiles() (line 520,
// the one --trusted-ca-file) through tlsutil.NewCertPool, when a listener
// (listener_tls.go:59, newTLSListener) or the gRPC server (server/v3
// embed/serve.go:230) is made. A new --trusted-ca-file content therefore
// needs an etcd restart: a CA rotation restarts etcd once on each member
// (rolling) after Introduce, before Promote lets any member renew under
// the new CA, and may restart it again, or not, after Retire. The
// appliance's own endpoints (ServerTLS, ClientTLS) take the bundle at every
// handshake. TestRealEtcdReloadsRenewedCertificate shows both against the
// real etcd: a renewal served to the next connection, a CA added to the
// file refused until a restart.
//
// One more thing etcd does not do by itself: --peer-client-cert-auth
// accepts any client certificate of a trusted CA on the peer port, a
// User's too. Limiting the peer port to members takes
// --peer-cert-allowed-hostname (a name only member certificates carry) or
// a CA of its own for peers.
package pki
