package fleet

// NetlabLeftovers lists the namespaces and links of g's netlab that exist
// on the machine; nil in loopback mode.
func (g *Group) NetlabLeftovers() []string {
	if g.lab == nil {
		return nil
	}
	return g.lab.leftovers()
}
