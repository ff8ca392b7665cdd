package cluster

import "testing"

func TestCheckSwap(t *testing.T) {
	voters := func() []Member {
		return []Member{
			{ID: 1, Name: "i-1", PeerURLs: []string{"http://a"}, ClientURLs: []string{"http://a:2379"}},
			{ID: 2, Name: "i-2", PeerURLs: []string{"http://b"}, ClientURLs: []string{"http://b:2379"}},
			{ID: 3, Name: "i-3", PeerURLs: []string{"http://c"}, ClientURLs: []string{"http://c:2379"}},
		}
	}
	all := map[ID]bool{1: true, 2: true, 3: true}
	for _, tc := range []struct {
		name    string
		ms      func() []Member
		healthy map[ID]bool
		id      ID
		holds   bool
	}{
		{"every other voter healthy", voters, all, 1, false},
		{"the swapping member itself unhealthy", voters, map[ID]bool{2: true, 3: true}, 1, false},
		{"another voter unhealthy", voters, map[ID]bool{1: true, 3: true}, 1, true},
		{"a learner pending", func() []Member {
			ms := voters()
			ms[2].IsLearner = true
			return ms
		}, all, 1, true},
		{"a member not started", func() []Member {
			ms := voters()
			ms[1].Name = ""
			return ms
		}, all, 1, true},
		{"one-member cluster", func() []Member { return voters()[:1] }, map[ID]bool{}, 1, false},
		{"not a member", voters, all, 9, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := CheckSwap(tc.ms(), tc.healthy, tc.id)
			if (h != nil) != tc.holds {
				t.Fatalf("CheckSwap = %v, want hold %v", h, tc.holds)
			}
			if h != nil && h.Rule != RuleFullStrength {
				t.Errorf("rule %q, want %q", h.Rule, RuleFullStrength)
			}
		})
	}
}

func TestNeedsRestorePoint(t *testing.T) {
	for _, tc := range []struct {
		cluster, next string
		running       []string
		want          bool
	}{
		{"3.5.0", "3.6.5", []string{"3.5.36", "3.5.36", "3.5.36"}, true},
		{"3.5.0", "3.6.5", []string{"3.5.36", "3.6.5", "3.5.36"}, false}, // not the first of 3.6
		{"3.5.0", "3.5.37", []string{"3.5.36"}, false},                   // a patch
		{"3.6.0", "3.6.5", []string{"3.6.4"}, false},
		{"3.6.0", "3.5.36", []string{"3.6.4"}, false}, // older: the gate's
		{"not_decided", "3.6.5", nil, false},
		{"3.5.0", "garbage", nil, false},
		{"3.5.0", "4.0.0", nil, false}, // across majors: the gate refuses
	} {
		if got := NeedsRestorePoint(tc.cluster, tc.next, tc.running); got != tc.want {
			t.Errorf("NeedsRestorePoint(%q, %q, %v) = %v, want %v", tc.cluster, tc.next, tc.running, got, tc.want)
		}
	}
}
