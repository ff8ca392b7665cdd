package fleet

import (
	"testing"
	"time"
)

// The EC2 endpoint's rewrite keeps every element it does not replace: an
// instance whose state was overwritten listed as "pending" for ever, and
// a terminated member was never removed on the faithful network.
func TestFillPublicAddressesKeepsTheRest(t *testing.T) {
	public := func(id string) (string, string, bool) {
		if id == "i-1" {
			return "198.18.0.1", "ec2-198-18-0-1.test", true
		}
		return "", "", false
	}
	in := `<item><instanceId>i-1</instanceId><imageId>ami-1</imageId><instanceState><code>48</code><name>terminated</name></instanceState>` +
		`<dnsName>ec2-54-1-1-1.compute-1.amazonaws.com</dnsName><reason/><ipAddress>54.1.1.1</ipAddress></item>` +
		`<item><instanceId>i-2</instanceId><instanceState><code>16</code><name>running</name></instanceState><dnsName/><ipAddress/></item>`
	want := `<item><instanceId>i-1</instanceId><dnsName>ec2-198-18-0-1.test</dnsName><ipAddress>198.18.0.1</ipAddress>` +
		`<imageId>ami-1</imageId><instanceState><code>48</code><name>terminated</name></instanceState><reason/></item>` +
		`<item><instanceId>i-2</instanceId><instanceState><code>16</code><name>running</name></instanceState></item>`
	if got := string(fillPublicAddresses([]byte(in), public)); got != want {
		t.Errorf("rewritten:\n%s\nwant:\n%s", got, want)
	}
}

// A lost chunk waits a retransmission timeout, doubled for each loss of
// its retransmission.
func TestRetransmission(t *testing.T) {
	if d := retransmission(0, 100*time.Millisecond); d != 0 {
		t.Errorf("no loss: %s, want 0", d)
	}
	// Always lost: 300 + 600 + 1200 + 2400 + 4800 + 9600 ms.
	if d, want := retransmission(1, 50*time.Millisecond), 18900*time.Millisecond; d != want {
		t.Errorf("always lost: %s, want %s", d, want)
	}
}
