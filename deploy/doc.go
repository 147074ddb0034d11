// Package deploy holds no code: systemd/, container/ and kubernetes/ are
// deployment recipes for zerohop servers, and README.md explains them. Its
// tests keep the recipes true: every manifest parses and has what it needs,
// the capability set is the same everywhere and is exactly what the AF_XDP
// backend needs (measured in network namespaces as root), the unit passes
// systemd-analyze verify and the Kubernetes objects kubectl's client-side
// dry run.
package deploy
