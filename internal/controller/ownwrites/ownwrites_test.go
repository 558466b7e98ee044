package ownwrites

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func cm(name, rv string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: rv}}
}

// write is a write the API server answers with resource version to, or
// fails when to is "".
func write(t *Tracker, obj client.Object, to string) error {
	return t.Write(obj, func() error {
		if to == "" {
			return errors.New("conflict")
		}
		obj.SetResourceVersion(to)
		return nil
	})
}

func TestBehind(t *testing.T) {
	tests := []struct {
		name   string
		writes []string // resource versions successive writes of "a" answer with, from "1"
		cached []string // what the cache then shows, in order
		behind []bool
	}{
		{name: "never written", cached: []string{"1"}, behind: []bool{false}},
		{name: "cache still at the version written over", writes: []string{"2"}, cached: []string{"1", "1"}, behind: []bool{true, true}},
		{name: "cache caught up: forgotten", writes: []string{"2"}, cached: []string{"2", "1"}, behind: []bool{false, false}},
		{name: "someone else's later write", writes: []string{"2"}, cached: []string{"5"}, behind: []bool{false}},
		{name: "two writes in a row: both versions written over are behind", writes: []string{"2", "3"}, cached: []string{"1", "2", "3"}, behind: []bool{true, true, false}},
		{name: "a failed write is not remembered", writes: []string{""}, cached: []string{"1"}, behind: []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &Tracker{}
			obj := cm("a", "1")
			for _, to := range tt.writes {
				if err := write(tr, obj, to); (err != nil) != (to == "") {
					t.Fatalf("write to %q: %v", to, err)
				}
			}
			for i, rv := range tt.cached {
				if got := tr.Behind(cm("a", rv)); got != tt.behind[i] {
					t.Errorf("cached %q (step %d): Behind = %v, want %v", rv, i, got, tt.behind[i])
				}
			}
			if tr.Behind(cm("b", "1")) {
				t.Error("another object is behind")
			}
		})
	}
}

func TestForget(t *testing.T) {
	tr := &Tracker{}
	obj := cm("a", "1")
	if err := write(tr, obj, "2"); err != nil {
		t.Fatal(err)
	}
	tr.Forget(client.ObjectKeyFromObject(obj))
	if tr.Behind(cm("a", "1")) {
		t.Error("a forgotten object is behind")
	}
}
