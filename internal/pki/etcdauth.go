package pki

// MemberCommonName is the common name of every member certificate the
// cluster CA issues (--tls auto): the etcd user the appliances act as
// under --etcd-auth, granted the root role. The instance id is in the
// certificate's addresses and in every log line; a name of its own per
// member would need an etcd user per member, which a joiner cannot have
// before it joins (creating users takes the root role once auth is on).
const MemberCommonName = "etcd-appliance"

// RootUser is etcd's superuser: `auth enable` refuses to turn auth on
// unless a user of this name with the root role exists. The appliance
// creates it without a password, so that nobody logs in as root with one;
// an operator acts as root with a certificate from
// `etcd-appliance client-cert --name root`.
const RootUser = "root"

// How etcd (v3.7.3) takes a client certificate's common name as its user,
// read in its source (go.etcd.io/etcd/server/v3@v3.7.3):
//
//   - etcdserver/v3_server.go:1206 AuthInfoFromCtx: the user comes first
//     from a token in the request's metadata (a password login); only
//     without one, and only with --client-cert-auth (Cfg.ClientCertAuthEnabled,
//     line 1211), from the TLS connection (line 1214). The appliance's
//     clients never log in, so their user is their certificate's.
//   - auth/store.go:1013 AuthInfoFromTLS: the user is
//     VerifiedChains[0][0].Subject.CommonName (line 1025), the leaf of a
//     verified chain, with the current auth revision; no SAN or OU counts.
//     A request through the HTTP/JSON gateway is the exception (line 1034):
//     its CN is never used, and embed/serve.go:464-473 refuses /v3/
//     requests with a CN while auth is on.
//   - auth/store.go:913 IsAdminPermitted: with auth off everything passes
//     (line 914); with it on, an empty user is ErrUserEmpty, an unknown one
//     ErrUserNotFound (line 927), one without the root role
//     ErrPermissionDenied (line 930). hasRootRole (line 994) looks for the
//     role name "root" among the user's roles, and UserGrantRole (line 549)
//     grants "root" without a role record: no `role add root` is needed.
//   - What needs the root role (IsAdminPermitted): membership changes —
//     add, remove, promote, update (etcdserver/server.go:1360
//     checkMembershipOperationPermission, called at lines 1382, 1441, 1505,
//     1657); Snapshot, Defragment, Hash, HashKV, MoveLeader, Downgrade and
//     alarm changes (etcdserver/api/v3rpc/maintenance.go:324-391,
//     authMaintenanceServer); every user and role change and auth
//     enable/disable (etcdserver/apply/auth.go:244 needAdminPermission).
//     Status and the alarm list need only a user (maintenance.go:358, 370,
//     v3rpc/auth.go:191 requireAuthInfo); keys need a role's permission or
//     root (apply/auth.go:73 checkPutAuth, IsRangePermitted for ranges,
//     transactions, watches at v3rpc/watch.go:238); AuthStatus needs
//     nothing (it is not in needAdminPermission), and a user may read its
//     own record with UserGet (apply/auth.go:222).
//   - auth/store.go:266 AuthEnable: refused with ErrRootUserNotExist
//     without a user "root" (line 280), ErrRootRoleNotExist when it lacks
//     the root role (line 285); a no-op when auth is on (line 269).
//     UserAdd with NoPassword (line 447) stores no password, so that user
//     can only be a certificate's.
//   - etcd's /health and /readyz read a key as root (etcdhttp/health.go:222
//     and :434, AuthStore().WithRoot): auth never makes them fail, whatever
//     the caller (v3.5.36 does the same at its health.go:256 and :459,
//     v3.6.16 at :222 and :434). The appliance asks etcd's /version,
//     which no auth guards.
