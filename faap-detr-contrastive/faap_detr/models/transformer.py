"""Post-norm DETR encoder-decoder. Parameter names follow upstream DETR so official checkpoints load 1:1."""
import copy

import torch
import torch.nn.functional as F
from torch import nn


class EncoderLayer(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward, dropout):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src, key_padding_mask, pos):
        """src, pos [HW,B,C]; key_padding_mask [B,HW] (True = padding)."""
        q = k = src + pos
        attn = self.self_attn(q, k, value=src, key_padding_mask=key_padding_mask, need_weights=False)[0]
        src = self.norm1(src + self.dropout(attn))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout(ffn))


class DecoderLayer(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward, dropout):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt, memory, memory_key_padding_mask, pos, query_pos):
        """tgt, query_pos [Q,B,C]; memory, pos [HW,B,C]."""
        q = k = tgt + query_pos
        attn = self.self_attn(q, k, value=tgt, need_weights=False)[0]
        tgt = self.norm1(tgt + self.dropout(attn))
        attn = self.multihead_attn(
            tgt + query_pos, memory + pos, value=memory, key_padding_mask=memory_key_padding_mask, need_weights=False
        )[0]
        tgt = self.norm2(tgt + self.dropout(attn))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout(ffn))


class Decoder(nn.Module):
    def __init__(self, layer, num_layers, d_model):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt, memory, memory_key_padding_mask, pos, query_pos):
        """-> [L,Q,B,C]: every layer's output through the shared final norm.

        The *un-normed* output goes on to the next layer (upstream behaviour)."""
        states = []
        for layer in self.layers:
            tgt = layer(tgt, memory, memory_key_padding_mask, pos, query_pos)
            states.append(self.norm(tgt))
        return torch.stack(states)


class Transformer(nn.Module):
    def __init__(self, d_model=256, nhead=8, num_encoder_layers=6, num_decoder_layers=6, dim_feedforward=2048,
                 dropout=0.1):
        super().__init__()
        enc = EncoderLayer(d_model, nhead, dim_feedforward, dropout)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(copy.deepcopy(enc) for _ in range(num_encoder_layers))
        self.decoder = Decoder(DecoderLayer(d_model, nhead, dim_feedforward, dropout), num_decoder_layers, d_model)
        self.d_model = d_model
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src, mask, query_embed, pos):
        """src, pos [B,C,H,W]; mask [B,H,W]; query_embed [Q,C] -> hs [L,B,Q,C], memory [B,C,H,W]."""
        b, c, h, w = src.shape
        src = src.flatten(2).permute(2, 0, 1)
        pos = pos.flatten(2).permute(2, 0, 1)
        mask = mask.flatten(1)
        query_pos = query_embed.unsqueeze(1).repeat(1, b, 1)
        memory = src
        for layer in self.encoder.layers:
            memory = layer(memory, mask, pos)
        hs = self.decoder(torch.zeros_like(query_pos), memory, mask, pos, query_pos)
        return hs.transpose(1, 2), memory.permute(1, 2, 0).reshape(b, c, h, w)
