// Package authz is the mesh's authorization policy: rules that allow or
// deny calls by who is calling and what they call, compiled into a per-
// method decision table for the request path and into the XDP program's
// source-prefix × port ACL for what can be dropped before it reaches a
// socket.
//
// # Rules and decisions
//
// A Rule has an action (allow or deny) and conditions; a call matches when
// every condition the rule states holds:
//
//   - sources: the peer's address is inside one of these prefixes;
//   - identities: the peer's authenticated identity, the SPIFFE ID that
//     runtime.Request.Identity gives for a sealed request
//     (runtime.WithSealer, mesh/identity), matches one of these globs; a
//     call without one (unsealed) matches no rule that names identities,
//     not even "*";
//   - callers: the CALLER tag equals one of these service names;
//   - services, methods: the method "pkg.Service/Method" has a service
//     part matching one of the service globs and a method part matching
//     one of the method globs ('*' is any run of characters).
//
// Rules are tried in order and the first that matches decides (first
// match, as in a firewall's rule list: a policy reads top to bottom and a
// narrow exception goes above the broad rule it carves from). A call no
// rule matches gets the policy's default action, allow unless the file
// says "default: deny". An empty policy is valid: everything gets the
// default, and Report says so.
//
// The CALLER tag is a telemetry label the caller writes about itself, and a
// UDP source address can be spoofed by anyone who can send to the server:
// rules on callers and on sources restrict honest callers and casual
// mistakes, not attackers. Rules on identities are the ones an attacker
// cannot pass: the identity comes from a handshake and every sealed frame
// proves it (a server that must rely on them requires sealed frames,
// runtime.SealStrict).
//
// # Request path
//
// Compile resolves the method globs against the server's known methods
// once. For each method id the table holds the rules that can match it, in
// order, cut after the first rule without peer conditions (nothing after
// it can be reached). Match is a table lookup and a walk of that short
// list — prefix, exact and precompiled glob comparisons — with no
// allocation; it returns the deciding rule's index and, for a denial, its
// precomputed message. A method id the table does not know is matched
// against the rules that name no service or method (MatchName also
// evaluates the globs on a name it is given). Each decision increments a
// per-loop, per-rule hit counter.
//
// # The XDP part
//
// L4 compiles the policy for one destination port into bpf.ACLRule values:
// a source prefix is dropped in the kernel only when every known method
// is denied to it whatever its identity and caller (rules with identity or
// caller conditions cannot be decided from a packet, so an allow among them
// keeps the prefix out of the kernel's hands; a deny with such conditions
// above it does not, so the compiler may leave to the matcher a source it
// would deny every call from, never the other way round). Since the XDP
// ACL takes the
// longest prefix, the first-match order is flattened: every prefix the
// rules name splits the address space, each piece gets the decision the
// rules give it, and an entry is written only where a piece's decision
// differs from the piece around it. SyncACL applies the result to a
// program's maps as a diff, leaving other ports' entries and the hit
// counts of unchanged entries alone. Calls dropped there get no DENIED
// answer: the caller sees a timeout.
//
// # Files and reloading
//
// ParseFile reads a policy from YAML (JSON is YAML too) and names the line
// and column of every error. Engine holds the current policy behind an
// atomic pointer: Load and LoadFile compile a new one and swap it in
// whole, so a call sees either the old policy or the new one and none is
// dropped; on any error the old policy stays. Watch polls a file and
// reloads it when it changes.
package authz
