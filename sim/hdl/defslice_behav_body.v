  // ---- buffers --------------------------------------------------------------------------
  reg [7:0] dbuf [0:DESC_STRIDE-1];
  reg [7:0] wbuf [0:WIN_BYTES-1];
  reg [7:0] qbuf [0:QBUF_BYTES-1];
  reg [7:0] obuf [0:OBUF_BYTES-1];

  // ---- the engine: a behavioural program, one descriptor after the other ----------------
  integer i, k, n, beats, d, q, lv, m, p, c, r, ch;
  reg [63:0] a_addr, a_end;
  integer qstart, qcount;
  integer row0 [0:LEVELS-1];
  integer col0 [0:LEVELS-1];
  integer rows [0:LEVELS-1];
  integer cols [0:LEVELS-1];
  integer ylo [0:LEVELS-1];
  integer yhi [0:LEVELS-1];
  integer xlo [0:LEVELS-1];
  integer xhi [0:LEVELS-1];
  integer winoff [0:LEVELS-1];
  reg signed [63:0] x, y, wa, x0, y0, fx, fy, sum, s, v, t, res;
  reg signed [63:0] acc [0:CHANNELS-1];
  reg signed [63:0] wc [0:3];
  reg [63:0] rec;
  integer cr, cc, kk;

  task store_beat(input integer sel, input integer off, input [BUS_BITS-1:0] data);
    integer b;
    begin
      for (b = 0; b < BUS_BYTES; b = b + 1)
        case (sel)
          0: dbuf[off + b] = data[8*b +: 8];
          1: wbuf[off + b] = data[8*b +: 8];
          default: qbuf[off + b] = data[8*b +: 8];
        endcase
    end
  endtask

  // Beats of the next burst of a region: as long as possible, at most MAX_BEATS, never
  // across 4 KiB (split_bursts() in model/layout.py).
  function integer burst_beats(input [63:0] addr, input integer left);
    begin
      burst_beats = (4096 - addr % 4096) / BUS_BYTES;
      if (burst_beats > left / BUS_BYTES) burst_beats = left / BUS_BYTES;
      if (burst_beats > MAX_BEATS) burst_beats = MAX_BEATS;
    end
  endfunction

  // Read [addr, addr + nbytes) into buffer sel at off, split like split_bursts().
  task read_region(input [63:0] addr, input integer nbytes, input integer sel,
                   input integer off);
    integer left, nb, got;
    begin
      left = nbytes;
      while (left > 0 && !abort) begin
        nb = burst_beats(addr, left);
        araddr_r <= addr; arlen_r <= nb - 1; arvalid_r <= 1'b1;
        tick;
        while (!m_axi_arready && !abort) tick;
        arvalid_r <= 1'b0;
        rready_r <= 1'b1;
        got = 0;
        while (got < nb && !abort) begin
          tick;
          if (m_axi_rvalid) begin
            store_beat(sel, off + got * BUS_BYTES, m_axi_rdata);
            got = got + 1;
          end
        end
        rready_r <= 1'b0;
        addr = addr + nb * BUS_BYTES; off = off + nb * BUS_BYTES;
        left = left - nb * BUS_BYTES;
      end
    end
  endtask

  function [BUS_BITS-1:0] out_beat(input integer off);
    integer b;
    begin
      for (b = 0; b < BUS_BYTES; b = b + 1) out_beat[8*b +: 8] = obuf[off + b];
    end
  endfunction

  task write_region(input [63:0] addr, input integer nbytes);
    integer left, nb, sent, off;
    begin
      left = nbytes; off = 0;
      while (left > 0 && !abort) begin
        nb = burst_beats(addr, left);
        awaddr_r <= addr; awlen_r <= nb - 1; awvalid_r <= 1'b1;
        tick;
        while (!m_axi_awready && !abort) tick;
        awvalid_r <= 1'b0;
        sent = 0;
        wdata_r <= out_beat(off); wlast_r <= (nb == 1); wvalid_r <= 1'b1;
        while (sent < nb && !abort) begin
          tick;
          if (m_axi_wready) begin
            sent = sent + 1;
            if (sent < nb) begin
              wdata_r <= out_beat(off + sent * BUS_BYTES); wlast_r <= (sent == nb - 1);
            end else begin
              wvalid_r <= 1'b0; wlast_r <= 1'b0;
            end
          end
        end
        bready_r <= 1'b1;
        tick;
        while (!m_axi_bvalid && !abort) tick;
        bready_r <= 1'b0;
        addr = addr + nb * BUS_BYTES; off = off + nb * BUS_BYTES;
        left = left - nb * BUS_BYTES;
      end
    end
  endtask

  function integer u32(input integer off);
    u32 = {dbuf[off + 3], dbuf[off + 2], dbuf[off + 1], dbuf[off]};
  endfunction

  function integer i16(input integer off);
    reg [15:0] h;
    begin
      h = {dbuf[off + 1], dbuf[off]};
      i16 = {{16{h[15]}}, h};
    end
  endfunction

  function signed [63:0] value_at(input integer lvl, input integer rr, input integer cl,
                                  input integer chan);
    integer base, b;
    reg [31:0] raw;
    begin
      base = winoff[lvl] + (rr * cols[lvl] + cl) * PIXEL_STRIDE + chan * ELEM_BYTES;
      raw = 0;
      for (b = 0; b < ELEM_BYTES; b = b + 1) raw[8*b +: 8] = wbuf[base + b];
      value_at = sext(raw, 8 * ELEM_BYTES);
    end
  endfunction

  function signed [63:0] sext(input [63:0] raw, input integer bits);
    reg [63:0] mask;
    begin
      mask = (64'd1 << bits) - 1;
      raw = raw & mask;
      if (raw[bits - 1]) sext = raw | ~mask; else sext = raw;
    end
  endfunction

  function signed [63:0] sat(input signed [63:0] val, input integer bits);
    reg signed [63:0] lo, hi;
    begin
      hi = (64'sd1 <<< (bits - 1)) - 1; lo = -(64'sd1 <<< (bits - 1));
      sat = val > hi ? hi : (val < lo ? lo : val);
    end
  endfunction

  function signed [63:0] rhu(input signed [63:0] val, input integer sh);
    begin
      if (sh == 0) rhu = val; else rhu = (val + (64'sd1 <<< (sh - 1))) >>> sh;
    end
  endfunction

  initial busy_tick = 0;

  always begin : engine
    wait_start;
    for (d = 0; d < num_desc && !abort; d = d + 1) begin
      read_region(desc_base + d * DESC_STRIDE, DESC_STRIDE, 0, 0);
      qstart = u32(0); qcount = u32(4);
      k = 0;
      for (lv = 0; lv < LEVELS; lv = lv + 1) begin
        row0[lv] = i16(16 + 16 * lv); col0[lv] = i16(18 + 16 * lv);
        rows[lv] = i16(20 + 16 * lv); cols[lv] = i16(22 + 16 * lv);
        ylo[lv] = i16(24 + 16 * lv); yhi[lv] = i16(26 + 16 * lv);
        xlo[lv] = i16(28 + 16 * lv); xhi[lv] = i16(30 + 16 * lv);
        winoff[lv] = k;
        for (r = 0; r < rows[lv]; r = r + 1) begin
          read_region(value_base + level_offset(lv)
                      + ((row0[lv] + r) * level_w(lv) + col0[lv]) * PIXEL_STRIDE,
                      cols[lv] * PIXEL_STRIDE, 1, k);
          k = k + cols[lv] * PIXEL_STRIDE;
        end
      end
      read_region(query_base + qstart * QUERY_STRIDE, qcount * QUERY_STRIDE, 2, 0);
      for (i = 0; i < qcount * OUT_STRIDE; i = i + 1) obuf[i] = 8'd0;
      for (q = 0; q < qcount && !abort; q = q + 1) begin
        for (c = 0; c < CHANNELS; c = c + 1) acc[c] = 0;
        for (m = 0; m < HEADS; m = m + 1)
          for (lv = 0; lv < LEVELS; lv = lv + 1)
            for (p = 0; p < POINTS; p = p + 1) begin
              n = q * QUERY_STRIDE + ((m * LEVELS + lv) * POINTS + p) * 8;
              for (kk = 0; kk < 8; kk = kk + 1) rec[8*kk +: 8] = qbuf[n + kk];
              x = sext(rec[23:0], 24); y = sext(rec[47:24], 24); wa = sext(rec[63:48], 16);
              if (CLAMP) begin
                if (x < (xlo[lv] <<< COORD_FRAC)) x = xlo[lv] <<< COORD_FRAC;
                if (x > (xhi[lv] <<< COORD_FRAC)) x = xhi[lv] <<< COORD_FRAC;
                if (y < (ylo[lv] <<< COORD_FRAC)) y = ylo[lv] <<< COORD_FRAC;
                if (y > (yhi[lv] <<< COORD_FRAC)) y = yhi[lv] <<< COORD_FRAC;
              end
              x0 = x >>> COORD_FRAC; y0 = y >>> COORD_FRAC;
              fx = x & (ONE - 1); fy = y & (ONE - 1);
              wc[0] = (ONE - fy) * (ONE - fx);
              wc[1] = (ONE - fy) * fx;
              wc[2] = fy * (ONE - fx);
              wc[3] = fy * fx;
              for (ch = 0; ch < CHANNELS_PER_HEAD; ch = ch + 1) begin
                sum = 0;
                for (kk = 0; kk < 4; kk = kk + 1) begin
                  cr = y0 + kk / 2; cc = x0 + kk % 2;
                  if (cr >= row0[lv] && cr < row0[lv] + rows[lv]
                      && cc >= col0[lv] && cc < col0[lv] + cols[lv])
                    sum = sum + value_at(lv, cr - row0[lv], cc - col0[lv],
                                         m * CHANNELS_PER_HEAD + ch) * wc[kk];
                end
                s = rhu(sum, 2 * COORD_FRAC);
                t = s * wa;
                acc[m * CHANNELS_PER_HEAD + ch] = sat(acc[m * CHANNELS_PER_HEAD + ch] + t,
                                                      ACC_BITS);
              end
              for (kk = 0; kk < CHANNELS_PER_HEAD / LANES && !abort; kk = kk + 1) begin
                busy_tick <= 1'b1;
                tick;
              end
              busy_tick <= 1'b0;
            end
        for (c = 0; c < CHANNELS; c = c + 1) begin
          res = sat(rhu(acc[c], OUT_SHIFT), OUT_BITS);
          for (kk = 0; kk < OUT_ELEM_BYTES; kk = kk + 1)
            obuf[q * OUT_STRIDE + c * OUT_ELEM_BYTES + kk] = res[8*kk +: 8];
        end
      end
      write_region(out_base + qstart * OUT_STRIDE, qcount * OUT_STRIDE);
    end
    if (abort) busy_tick <= 1'b0;
    finish_run;
  end
endmodule
