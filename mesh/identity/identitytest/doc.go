// Package identitytest makes the identities tests need: a test CA for a
// trust domain, short-lived X.509-SVIDs it issues, a static Source, and
// identity directories on disk in the --identity layout. Keys are ECDSA
// P-256 made with crypto/rand; nothing here is for production.
package identitytest
