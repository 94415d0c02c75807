package storetest

import (
	"bytes"
	"context"
	"testing"

	"github.com/rehost/rehost/pkg/store"
)

func testSettings(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.GetSetting(ctx, "aws.region")
	wantErr(t, err, store.ErrNotFound, "aws.region")
	if err := s.PutSetting(ctx, "aws.region", []byte("eu-west-1")); err != nil {
		t.Fatal(err)
	}
	blob := []byte{0, 0xfe, 'k', 0}
	if err := s.PutSetting(ctx, "aws.credentials", blob); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSetting(ctx, "aws.region", []byte("us-east-2")); err != nil {
		t.Fatal(err)
	}
	if v := ok(s.GetSetting(ctx, "aws.region")).must(t); string(v) != "us-east-2" {
		t.Errorf("region = %q", v)
	}
	if v := ok(s.GetSetting(ctx, "aws.credentials")).must(t); !bytes.Equal(v, blob) {
		t.Errorf("blob = %x", v)
	}
	if err := s.PutSetting(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	if v := ok(s.GetSetting(ctx, "empty")).must(t); v == nil || len(v) != 0 {
		t.Errorf("empty setting = %v", v)
	}
	if err := s.DeleteSetting(ctx, "aws.region"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSetting(ctx, "aws.region"); err != nil {
		t.Errorf("deleting an unset key: %v", err)
	}
	_, err = s.GetSetting(ctx, "aws.region")
	wantErr(t, err, store.ErrNotFound)
}
